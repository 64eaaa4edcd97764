"""What a client that attaches is told a stream reads: never a credential, never a server path.

The stored source is what the service opened: an absolute path for ``file:NAME`` or a URL that may
carry a password (``rtsp://user:pass@cam/``) or a token in its query. Anyone with the server token
may attach to a stream, so attach shows ``file:NAME`` (relative to the media root, else the file's
name) and a URL reduced to scheme, host, port and path.
"""

from __future__ import annotations

from pathlib import PurePath
from urllib.parse import urlsplit


def shown_source(source: str | None, media_root: PurePath | None = None) -> str:
    """``source`` as a client may see it."""
    if not source or source == "push":
        return source or "push"
    if "://" in source:
        try:
            parts = urlsplit(source)
            port = parts.port
        except ValueError:
            return "url"
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        return f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"
    path = PurePath(source)
    if media_root is not None:
        try:
            return f"file:{path.relative_to(media_root).as_posix()}"
        except ValueError:
            pass
    return f"file:{path.name}"
