"""Open a source with PyAV and describe its video stream, turning every failure into one clear error.

This is the only place that maps FFmpeg's exceptions to :mod:`scenekv.ingest.errors`, so a missing file,
a text file, an audio-only file or a dead URL reads the same whichever source type hit it.

A URL is opened with an FFmpeg ``protocol_whitelist`` for its scheme (``URL_PROTOCOLS``): the network
protocols that scheme needs and never ``file``, ``pipe``, ``fd``, ``concat``, ``subfile`` or ``cache``,
so nothing a remote server sends (an HLS playlist, a redirect, an RTSP answer) can make FFmpeg read a
local file. RTSP gets no ``udp``/``rtp`` unless the caller asks for a UDP ``rtsp_transport``: SceneKV
reads RTSP over TCP, and over UDP a server chooses where FFmpeg sends its packets. A caller's own
``protocol_whitelist`` option wins (only trusted callers pass options; web clients cannot). Local
files are opened without one: FFmpeg's file protocol already allows only ``file,crypto,data``.
"""

from __future__ import annotations

import bisect
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av

from scenekv.units import parse_seconds

from .errors import (
    EmptySource,
    IngestError,
    NotMedia,
    NoVideoStream,
    SourceNotFound,
    SourceUnreachable,
    UnsupportedSource,
)

URL_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp")
# Protocols whose streams are live by nature; http(s) is decided by what the server sends.
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp")
_HTTP = "http,https,tcp,tls,crypto,data,httpproxy"  # crypto and data: HLS keys and inline URIs
_RTSP = "tcp,tls,http,https,httpproxy"  # interleaved over TCP, or tunnelled in HTTP
URL_PROTOCOLS = {  # FFmpeg protocols a URL of each scheme may open (see the module docstring)
    "http": _HTTP,
    "https": _HTTP,
    "rtsp": _RTSP,
    "rtsps": _RTSP,
    "rtmp": "rtmp,rtmps,tcp,tls",
    "rtmps": "rtmp,rtmps,tcp,tls",
    "udp": "udp",
    "tcp": "tcp",
}


def classify(source: str | os.PathLike) -> tuple[str, str]:
    """Return ``("file", path)`` or ``("url", url)``; raise for schemes we do not read."""
    text = os.fspath(source)
    if "://" not in text:
        return "file", text
    scheme = urlsplit(text).scheme.lower()
    if scheme == "file":
        return "file", urlsplit(text).path
    if scheme not in URL_SCHEMES:
        raise UnsupportedSource(
            f"unsupported source scheme {scheme + '://'!r} in {text}; use a file path or one of "
            + ", ".join(s + "://" for s in URL_SCHEMES)
        )
    return "url", text


def check_file(path: str) -> None:
    """Fail early, with a specific message, for paths FFmpeg would only call 'invalid data'."""
    p = Path(path)
    if not p.exists():
        raise SourceNotFound(f"no such file: {path}")
    if p.is_dir():
        raise NotMedia(f"{path} is a directory, not a media file")
    if not os.access(p, os.R_OK):
        raise IngestError(f"permission denied: {path}", code="permission_denied")
    if p.stat().st_size == 0:
        raise EmptySource(f"{path} is empty (0 bytes)")


def open_file(path: str) -> av.container.InputContainer:
    check_file(path)
    try:
        return av.open(path, metadata_errors="replace")
    except av.error.FileNotFoundError as exc:
        raise SourceNotFound(f"no such file: {path}") from exc
    except av.error.PermissionError as exc:
        raise IngestError(f"permission denied: {path}", code="permission_denied") from exc
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        with open(path, "rb") as f:
            head = f.read(12)
        if head[4:8] == b"ftyp":
            raise NotMedia(
                f"{path} is an MP4/MOV without its index (moov box): truncated, or a recording that "
                "was never finalized"
            ) from exc
        raise NotMedia(f"{path} is not a readable media file ({_reason(exc)})") from exc


def open_url(
    url: str, *, timeout: float, options: dict[str, str] | None = None
) -> av.container.InputContainer:
    """Open a URL with an open and a read timeout (seconds); FFmpeg waits forever otherwise."""
    opts = dict(options or {})
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("rtsp", "rtsps"):
        opts.setdefault("rtsp_transport", "tcp")  # survives NAT and firewalls; UDP loses packets
    opts.setdefault("protocol_whitelist", url_protocols(scheme, opts))
    try:
        return av.open(url, options=opts, timeout=(timeout, timeout), metadata_errors="replace")
    except av.error.ExitError as exc:  # our interrupt callback fired
        raise SourceUnreachable(f"cannot open {url}: no answer within {timeout:g} s") from exc
    except av.error.ProtocolNotFoundError as exc:
        raise UnsupportedSource(f"cannot open {url}: this FFmpeg build has no such protocol") from exc
    except av.error.InvalidDataError as exc:
        raise NotMedia(f"cannot open {url}: the server sent no readable media ({_reason(exc)})") from exc
    except (av.FFmpegError, OSError) as exc:
        raise SourceUnreachable(f"cannot open {url}: {_reason(exc)}") from exc


def url_protocols(scheme: str, options: dict[str, str] | None = None) -> str:
    """The FFmpeg ``protocol_whitelist`` for a URL of ``scheme`` (never ``file``); RTSP adds UDP and
    RTP only when ``options`` ask for a UDP ``rtsp_transport``."""
    protocols = URL_PROTOCOLS.get(scheme.lower())
    if protocols is None:
        raise UnsupportedSource(f"unsupported source scheme {scheme + '://'!r}")
    transport = str((options or {}).get("rtsp_transport", ""))
    if scheme.lower() in ("rtsp", "rtsps") and "udp" in transport:
        protocols += ",udp,rtp,srtp"
    return protocols


def _reason(exc: BaseException) -> str:
    """FFmpeg's error text without the errno and file name noise."""
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).rstrip(".").replace("\n", " ")


def _is_real_video(stream: av.video.stream.VideoStream) -> bool:
    try:
        return not (stream.disposition & av.stream.Disposition.attached_pic)  # cover art in mp3/m4a
    except AttributeError:
        return True


def video_stream(container: av.container.InputContainer, name: str) -> av.video.stream.VideoStream:
    streams = [s for s in container.streams.video if _is_real_video(s)]
    if not streams:
        found = sorted({s.type for s in container.streams}) or ["none"]
        raise NoVideoStream(f"{name} has no video stream (streams found: {', '.join(found)})")
    return streams[0]


@dataclass
class VideoInfo:
    """What the method chooser and the decoders need to know about a file's video stream.

    ``keyframes`` are keyframe times (seconds on the pts timeline) from the container index, when the
    container has one (MP4/MOV/MKV/AVI do, MPEG-TS does not).
    """

    fps: float | None
    origin: float
    duration: float | None
    width: int
    height: int
    codec: str
    keyframes: list[float] = field(default_factory=list)

    @property
    def gop_s(self) -> float | None:
        """Median keyframe interval in seconds (None without an index or with a single keyframe)."""
        if len(self.keyframes) < 2:
            return None
        return statistics.median(b - a for a, b in zip(self.keyframes, self.keyframes[1:], strict=False))

    def keyframe_before(self, t: float) -> float | None:
        """Latest indexed keyframe at or before ``t``."""
        i = bisect.bisect_right(self.keyframes, t + 1e-6)
        return self.keyframes[i - 1] if i else None


def _tag_seconds(text: str) -> float | None:
    """A duration tag (Matroska writes ``00:00:05.000000000``) in seconds; None when unreadable."""
    try:
        return parse_seconds(text)
    except ValueError:
        return None


def origin_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    """The time that pts 0 stands for: the container's start time, as players and ``ffmpeg -ss`` use."""
    if container.start_time is not None:
        return container.start_time / 1_000_000
    if stream.start_time is not None and stream.time_base is not None:
        return float(stream.start_time * stream.time_base)
    return 0.0


def describe(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> VideoInfo:
    origin = origin_seconds(container, stream)
    tb = stream.time_base
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    duration = None
    if stream.duration is not None and tb is not None:
        start = stream.start_time if stream.start_time is not None else 0
        duration = float((start + stream.duration) * tb) - origin
    elif "DURATION" in stream.metadata:  # Matroska keeps per-stream durations in tags
        duration = _tag_seconds(stream.metadata["DURATION"])
    elif container.duration is not None and len(container.streams) == 1:
        duration = container.duration / 1_000_000
    keyframes: list[float] = []
    try:
        entries = stream.index_entries or []
    except Exception:
        entries = []
    if tb is not None:
        # Index timestamps are DTS; they trail PTS by the reorder delay, which is fine for choosing where
        # to seek (the seek is verified against real frame pts afterwards).
        keyframes = sorted(float(e.timestamp * tb) - origin for e in entries if e.is_keyframe)
    cc = stream.codec_context
    return VideoInfo(
        fps=float(rate) if rate else None,
        origin=origin,
        duration=duration,
        width=cc.width,
        height=cc.height,
        codec=cc.name,
        keyframes=keyframes,
    )


def media_duration(path: str) -> float | None:
    """The video stream's duration in seconds on the pts timeline, else the container's (None when the
    file declares neither).

    Raises the same clean errors as opening the file for decoding; the rule is ``describe``'s, so a
    duration here is the one the decoders and range splits see.
    """
    with open_file(path) as container:
        duration = describe(container, video_stream(container, path)).duration
        if duration is None and container.duration:  # no per-stream figure: the container's own
            duration = container.duration / 1_000_000
        return duration
