"""Which sources a client may ask the server to read: push, files under --media-root, allowed URLs.

A WebSocket client is remote and untrusted; "file:NAME" must never reach outside the media root
(``..`` is refused, symlinks are resolved before the check), and only streaming URL schemes are
accepted.
A URL whose host resolves to an address inside is refused unless the operator allowed that host
(``--allow-source-host``): ingest/hosts.py's rule, which webhooks share. Known gaps: the decoder
resolves the name again when it connects (DNS rebinding) and follows HTTP redirects; an egress
firewall is the complete answer.

Every refusal is a ProtocolError (``bad_request`` for what cannot be read, ``forbidden_source`` for
what may not be), never an exception from the parsers underneath:

- ``file:NAME`` follows media.safe_relative (no hidden, ``.``/``..`` or absolute parts, no control
  characters), and refuses playlists and other indirection files that make FFmpeg open further
  files or URLs (HLS, ffconcat, SDP, DASH, PLS ...): by extension and, since a playlist can be named
  ``x.mp4``, by its first bytes.
- A URL must be printable ASCII (percent-encode the rest): a space, a control character or NUL could
  make FFmpeg's C parser see another host than Python's ``urlsplit`` did. A bad IPv6 literal or port
  is ``bad_request``.
- ``udp://`` query options are FFmpeg socket options; only ``UDP_OPTIONS`` pass (bounded integers),
  the others are dropped: ``localaddr``/``localport``/``reuse`` bind to, or share, ports of the
  server's choosing, ``fifo_size`` unbounded is memory, ``broadcast``/``ttl``/``connect``/``sources``
  /``block`` concern sending or multicast, which the host rule refuses anyway.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from scenekv.ingest.hosts import HostRefused, check_host

from .media import malformed_name, unsafe_segments
from .protocol import BAD_REQUEST, FORBIDDEN_SOURCE, NOT_URL_TEXT, ProtocolError

URL_SCHEMES = ("rtsp", "rtmp", "http", "https", "udp")
MAX_URL_CHARS = 2048
# udp:// query options a client may set: name -> inclusive bounds of its integer value
UDP_OPTIONS = {
    "fifo_size": (1, 1 << 17),  # packets of 188 bytes in the receive ring: at most 24 MiB
    "overrun_nonfatal": (0, 1),
    "timeout": (0, 60_000_000),  # microseconds
    "buffer_size": (1, 8 << 20),  # SO_RCVBUF bytes (the kernel caps it too)
}
# Files that name other files or URLs for FFmpeg to open: refused as file:NAME sources.
INDIRECTION_SUFFIXES = frozenset({
    ".m3u", ".m3u8", ".hls", ".pls", ".ffconcat", ".concat", ".txt", ".sdp", ".xspf", ".asx", ".wpl",
    ".cue", ".mpd", ".smil", ".xml", ".ism", ".isml", ".ram", ".wvx", ".wax", ".url",
})  # fmt: skip
_INDIRECTION_HEADS = (b"#extm3u", b"ffconcat version", b"[playlist]", b"v=0", b"<")  # "<": XML (DASH)
_SDP_LINE = re.compile(rb"(?m)^c=in ip")  # FFmpeg's SDP probe looks for this line anywhere
_SNIFF_BYTES = 4096


def resolve_source(
    source: str, media_root: Path | None, allowed_hosts: Iterable[str] = (), *, resolve=socket.getaddrinfo
) -> str:
    """The string to hand to the service (``push``, an absolute path, or the URL). Blocks on DNS for
    URLs: call it off the event loop."""
    if source == "push":
        return source
    if source.startswith("file:"):
        return str(media_file(source[len("file:") :], media_root))
    if len(source) > MAX_URL_CHARS:
        raise ProtocolError(BAD_REQUEST, f"a URL source is at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(source)
    except ValueError as exc:  # e.g. "http://[::1/x": an unclosed IPv6 literal
        raise ProtocolError(BAD_REQUEST, f"source {source!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in URL_SCHEMES:
        return _checked_url(source, allowed_hosts, resolve)
    if scheme:
        raise ProtocolError(
            FORBIDDEN_SOURCE, f"URL scheme {scheme!r} is not allowed (use {', '.join(URL_SCHEMES)})"
        )
    raise ProtocolError(BAD_REQUEST, "source must be 'push', 'file:NAME' or a URL (rtsp, rtmp, http(s), udp)")


def _checked_url(source: str, allowed_hosts: Iterable[str], resolve) -> str:
    """``source`` as FFmpeg should get it (scheme in lower case, udp options filtered), or a
    ProtocolError."""
    if NOT_URL_TEXT.search(source):
        raise ProtocolError(
            BAD_REQUEST,
            "a URL source must be printable ASCII without spaces or control characters "
            "(percent-encode the rest)",
        )
    try:
        parts = urlsplit(source)
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise ProtocolError(BAD_REQUEST, f"source {source!r} is not a valid URL: {exc}") from None
    if not parts.netloc:
        raise ProtocolError(BAD_REQUEST, f"URL {source!r} has no host")
    if port == 0:
        raise ProtocolError(BAD_REQUEST, f"URL {source!r} has port 0")
    try:
        check_host(parts.hostname or "", allowed_hosts, resolve=resolve)
    except HostRefused as exc:
        raise ProtocolError(exc.code, str(exc)) from None
    scheme = parts.scheme.lower()
    url = scheme + source[len(parts.scheme) :]  # FFmpeg matches protocol names case-sensitively
    return _udp_options(url) if scheme == "udp" else url


def _udp_options(url: str) -> str:
    """``url`` with only the ``UDP_OPTIONS`` of its query (and no fragment, which FFmpeg would read
    as part of the query); a kept option with a bad value is ``bad_request``."""
    parts = urlsplit(url)
    if not parts.query and not parts.fragment:
        return url
    kept = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        bounds = UDP_OPTIONS.get(name)
        if bounds is None:
            continue  # dropped: see the module docstring
        low, high = bounds
        if not (value.isascii() and value.isdigit() and low <= int(value) <= high):
            raise ProtocolError(BAD_REQUEST, f"udp option {name!r} must be an integer in [{low}, {high}]")
        kept.append(f"{name}={int(value)}")
    return urlunsplit(parts._replace(query="&".join(kept), fragment=""))


def media_file(name: str, media_root: Path | None) -> Path:
    """The file ``name`` under the media root (ProtocolError: forbidden_source / bad_request)."""
    if media_root is None:
        raise ProtocolError(
            FORBIDDEN_SOURCE, "file sources are disabled (start the server with --media-root)"
        )
    if not name:
        raise ProtocolError(BAD_REQUEST, "file:NAME needs a file name")
    problem = malformed_name(name)
    if problem:
        raise ProtocolError(BAD_REQUEST, f"file:NAME: {problem}")
    problem = unsafe_segments(name)
    if problem:
        raise ProtocolError(FORBIDDEN_SOURCE, f"{name!r} is refused: {problem}")
    try:
        root = media_root.resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ProtocolError(BAD_REQUEST, f"cannot look up {name!r}: {type(exc).__name__}") from None
    if not path.is_relative_to(root) or path == root:
        raise ProtocolError(FORBIDDEN_SOURCE, f"{name!r} is outside the media root")
    if unsafe_segments(str(path.relative_to(root))):  # a link to a hidden file inside the root
        raise ProtocolError(FORBIDDEN_SOURCE, f"{name!r} leads to a hidden file")
    try:
        is_file = path.is_file()
    except OSError:
        is_file = False
    if not is_file:
        raise ProtocolError(BAD_REQUEST, f"no file {name!r} in the media root")
    why = _indirection(path, name)
    if why:
        raise ProtocolError(FORBIDDEN_SOURCE, f"{name!r} is refused: {why}")
    return path


def _indirection(path: Path, name: str) -> str | None:
    """Why ``path`` is a file that makes FFmpeg open other files or URLs (None when it is not)."""
    for suffix in {Path(name).suffix.lower(), path.suffix.lower()}:
        if suffix in INDIRECTION_SUFFIXES:
            return f"{suffix} files are playlists or lists of other files, which are not read"
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF_BYTES)
    except OSError as exc:
        raise ProtocolError(BAD_REQUEST, f"cannot read {name!r}: {exc.strerror or exc}") from None
    start = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if start.startswith(_INDIRECTION_HEADS) or _SDP_LINE.search(head.lower()):
        return "it is a playlist or session description (it names other files or URLs), not media"
    return None


def list_media(media_root: Path | None, limit: int = 200) -> list[str]:
    """Video files directly offered by the page (names relative to the media root): what
    ``media_file`` would accept by name (no hidden parts, no playlist extensions)."""
    if media_root is None or not media_root.is_dir():
        return []
    root = media_root.resolve()
    names = []
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if not p.is_file() or unsafe_segments(rel) or malformed_name(rel):
            continue
        target = p.resolve()
        if (
            target.is_relative_to(root)
            and not unsafe_segments(str(target.relative_to(root)))
            and not {p.suffix.lower(), target.suffix.lower()} & INDIRECTION_SUFFIXES
        ):
            names.append(rel)
            if len(names) >= limit:
                break
    return names
