"""GET /media/NAME: files under --media-root for the page's player, with HTTP Range (206).

The same confinement as a ``file:NAME`` source (sources.media_file) and the same token rule as
/ws. Browsers fetch media in ranges; a response carries at most ``MAX_PART`` bytes (an open range
is cut there and the player asks for the rest), so no request reads a whole large file into memory.

``safe_relative`` is the one rule for a name a client gives under a served folder (/media, /static,
``file:NAME``): checked as text before any filesystem call, because ``Path.resolve`` and ``stat``
raise (ValueError for NUL, OSError for a too-long segment, UnicodeEncodeError for a lone surrogate)
instead of answering "no such file".
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path

MAX_PART = 4 << 20  # bytes per 206 response
# a request without Range gets the whole file only up to this size (else 413): no request makes the
# gateway hold more than MAX_PART of a file (websockets' HTTP responses are bodies in memory, not
# streams, so the bound is what keeps many requests from filling it)
MAX_WHOLE = MAX_PART
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
TYPES = {  # explicit: /etc/mime.types maps .ts to a translation file format
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".ts": "video/mp2t",
    ".avi": "video/x-msvideo",
}


MAX_NAME_CHARS = 1024  # a client's relative name; a real one is far shorter
MAX_SEGMENT_BYTES = 255  # NAME_MAX: a longer segment is ENAMETOOLONG from the filesystem
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def malformed_name(name: str) -> str | None:
    """Why ``name`` cannot be a file name at all (None when it can): empty, too long, control
    characters (NUL included), not encodable as UTF-8, or a segment longer than a filesystem allows."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME_CHARS:
        return f"the name is longer than {MAX_NAME_CHARS} characters"
    if _CONTROL.search(name):
        return "the name holds a control character"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON \ud800 escape
        return "the name is not valid text"
    if any(len(part) > MAX_SEGMENT_BYTES for part in encoded.split(b"/")):
        return f"a part of the name is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def unsafe_segments(name: str) -> str | None:
    """Why ``name`` could reach outside its folder or into a hidden file (None when it cannot):
    absolute, a backslash (a separator on other systems), an empty, ``.`` or ``..`` part, or a part
    starting with a dot (``.env``, ``.git/``)."""
    if name.startswith(("/", "\\")):
        return "the name must be relative to the folder"
    if "\\" in name:
        return "the name holds a backslash"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "the name holds an empty, '.' or '..' part"
        if part.startswith("."):
            return "hidden names (starting with '.') are not served"
    return None


def safe_relative(name: str) -> str | None:
    """``name`` when it is a plain relative path (``sub/clip.mp4``) that is safe to join to a served
    folder; None for NUL or another control character, a name over ``MAX_NAME_CHARS``, a leading
    slash or backslash, an empty / ``.`` / ``..`` / hidden part. Callers answer None with 404."""
    if malformed_name(name) or unsafe_segments(name):
        return None
    return name


class RangeError(ValueError):
    """The Range header cannot be satisfied (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single ``bytes=`` range; None when there is none, or one that
    cannot be parsed (RFC 9110: ignored, the whole file is sent). Several ranges: the first one."""
    if not header:
        return None
    m = _RANGE.match(header.split(",")[0].strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise RangeError("the range selects nothing")
        first, last = max(0, size - n), size - 1
    else:
        first = int(m.group(1))
        if first >= size:
            raise RangeError(f"range {header!r} starts outside the file ({size} bytes)")
        last = int(m.group(2)) if m.group(2) else size - 1
        if last < first:
            return None  # invalid: ignored
        last = min(last, size - 1)
    return first, min(last, first + MAX_PART - 1)


def read_part(path: Path, first: int, last: int) -> bytes:
    """Exactly bytes first..last (a file that shrank meanwhile is an error, not a short body)."""
    with open(path, "rb") as f:
        f.seek(first)
        data = f.read(last - first + 1)
    if len(data) != last - first + 1:
        raise RangeError(f"the file changed while it was read ({len(data)} of {last - first + 1} bytes)")
    return data


def content_type(path: Path) -> str:
    return TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def size_of(path: Path) -> int:
    return os.stat(path).st_size
