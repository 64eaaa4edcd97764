"""``open_source``: one call for every kind of source; it picks the reader and validates the options."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from .base import Source
from .errors import InvalidOption
from .sampling import Resize


def open_source(
    source: str | os.PathLike,
    *,
    fps: float | None = 1.0,
    size: tuple[int, int] | None = None,
    max_side: int | None = None,
    method: str = "auto",
    timeout: float = 5.0,
    live: bool | None = None,
    queue_size: int = 2,
    reconnect=None,
    options: dict[str, str] | None = None,
    start: float = 0.0,
    end: float | None = None,
) -> Source:
    """Open a file or URL and return a :class:`Source` of sampled frames (use it as a context manager).

    ``fps``: target sampling rate (None keeps every frame). ``size=(w, h)`` resizes exactly;
    ``max_side`` shrinks so the longer side is at most that, keeping the aspect ratio. ``method``: auto,
    decode, seek, keyframes or decord (files only; see :mod:`scenekv.ingest.filesource`).
    ``timeout``: seconds to wait for a URL to answer (open and each read). ``live``: force live or
    file handling of a URL (default: rtsp/rtmp/udp/tcp are live; http(s) is live when the server gives
    no duration, e.g. MPEG-TS or a live HLS playlist). ``queue_size``, ``reconnect``
    (:class:`~scenekv.ingest.live.Reconnect`): live lag bound and backoff policy. ``options``: extra
    FFmpeg input options for URLs (e.g. ``{"rtsp_flags": "listen", "listen_timeout": "10"}``); a URL
    gets its scheme's ``protocol_whitelist`` unless they name one (never ``file``: see
    :mod:`scenekv.ingest.probe`), a local file none.
    ``start``/``end``: only the frames of [start, end) seconds of a file (it seeks there; the frames
    are exactly those a whole-file pass samples in that range), so ranges can be decoded in parallel.

    Raises a :class:`~scenekv.ingest.errors.IngestError` (a ``UserError``) with a one-line message for
    bad input: missing or empty file, not media, no video stream, unreachable URL, unsupported scheme,
    bad option.
    """
    from .probe import LIVE_SCHEMES, classify, open_file, open_url

    resize = Resize(size=size, max_side=max_side)
    if fps is not None and not (isinstance(fps, int | float) and 0 < fps < float("inf")):
        raise InvalidOption(f"fps must be a positive number, got {fps}")
    if not timeout or timeout <= 0:
        raise InvalidOption(f"timeout must be positive, got {timeout}")
    if queue_size < 1:
        raise InvalidOption(f"queue_size must be at least 1, got {queue_size}")
    if start < 0 or (end is not None and end <= start):
        raise InvalidOption(f"bad time range [{start:g}, {end}): need 0 <= start < end")
    kind, target = classify(source)

    if kind == "file":
        from .filesource import FileSource, choose_method

        choose_method(method, _NO_INFO, fps, True)  # validate the name before touching the file
        container = open_file(target)
        return FileSource(
            container, target, fps=fps, resize=resize, method=method, local_path=target, start=start, end=end
        )

    container = open_url(target, timeout=timeout, options=options)
    scheme = urlsplit(target).scheme.lower()
    is_live = live if live is not None else (scheme in LIVE_SCHEMES or container.duration is None)
    if not is_live:
        from .filesource import FileSource

        return FileSource(
            container, target, fps=fps, resize=resize, method=method, local_path=None, start=start, end=end
        )
    if start or end is not None:
        container.close()
        raise InvalidOption("start/end apply to files; a live source has no time range")
    if method not in ("auto", "decode"):
        container.close()
        raise InvalidOption(f"method {method!r} needs a file; live sources are always decoded in full")
    from .live import LiveSource

    return LiveSource(
        target,
        container,
        fps=fps,
        resize=resize,
        timeout=timeout,
        queue_size=queue_size,
        reconnect=reconnect,
        options=options,
    )


class _NoInfo:
    gop_s = None
    fps = None


_NO_INFO = _NoInfo()
