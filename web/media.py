"""GET /media/NAME: files under --media-root for the page's player, with HTTP Range (206).

The same confinement as a ``file:NAME`` source (sources.media_file) and the same token rule as
/ws. Browsers fetch media in ranges; a response carries at most ``MAX_PART`` bytes (an open range
is cut there and the player asks for the rest), so no request reads a whole large file into memory.
"""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path

MAX_PART = 4 << 20  # bytes per 206 response
MAX_WHOLE = 64 << 20  # a request without Range gets the whole file only up to this size
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
