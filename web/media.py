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


class RangeError(ValueError):
    """The Range header cannot be satisfied (416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single ``bytes=`` range, None when there is no Range header.

    Several ranges are answered with the first one only (allowed: a server may ignore Range)."""
    if not header:
        return None
    m = _RANGE.match(header.split(",")[0].strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise RangeError(f"unsupported Range {header!r} (use bytes=FIRST-LAST)")
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise RangeError("bytes=-0 selects nothing")
        first, last = max(0, size - n), size - 1
    else:
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else size - 1
        if first >= size or last < first:
            raise RangeError(f"range {first}-{last} is outside the file ({size} bytes)")
        last = min(last, size - 1)
    return first, min(last, first + MAX_PART - 1)


def read_part(path: Path, first: int, last: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(first)
        return f.read(last - first + 1)


def content_type(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def size_of(path: Path) -> int:
    return os.stat(path).st_size
