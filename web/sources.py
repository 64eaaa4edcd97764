"""Which sources a client may ask the server to read: push, files under --media-root, allowed URLs.

A WebSocket client is remote and untrusted; "file:NAME" must never reach outside the media root
(symlinks and ``..`` are resolved before the check), and only streaming URL schemes are accepted.
A URL whose host resolves to an address inside is refused unless the operator allowed that host
(``--allow-source-host``): ingest/hosts.py's rule, which webhooks share. Known gaps: the decoder
resolves the name again when it connects (DNS rebinding) and follows HTTP redirects; an egress
firewall is the complete answer.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from scenekv.ingest.hosts import HostRefused, check_host

from .protocol import BAD_REQUEST, FORBIDDEN_SOURCE, ProtocolError

URL_SCHEMES = ("rtsp", "rtmp", "http", "https", "udp")


def resolve_source(
    source: str, media_root: Path | None, allowed_hosts: Iterable[str] = (), *, resolve=socket.getaddrinfo
) -> str:
    """The string to hand to the service (``push``, an absolute path, or the URL). Blocks on DNS for
    URLs: call it off the event loop."""
    if source == "push":
        return source
    if source.startswith("file:"):
        return str(media_file(source[len("file:") :], media_root))
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme in URL_SCHEMES:
        if not parts.netloc:
            raise ProtocolError(BAD_REQUEST, f"URL {source!r} has no host")
        try:
            check_host(parts.hostname or "", allowed_hosts, resolve=resolve)
        except HostRefused as exc:
            raise ProtocolError(exc.code, str(exc)) from None
        return source
    if scheme:
        raise ProtocolError(
            FORBIDDEN_SOURCE, f"URL scheme {scheme!r} is not allowed (use {', '.join(URL_SCHEMES)})"
        )
    raise ProtocolError(BAD_REQUEST, "source must be 'push', 'file:NAME' or a URL (rtsp, rtmp, http(s), udp)")


def media_file(name: str, media_root: Path | None) -> Path:
    """The file ``name`` under the media root (ProtocolError: forbidden_source / bad_request)."""
    if media_root is None:
        raise ProtocolError(
            FORBIDDEN_SOURCE, "file sources are disabled (start the server with --media-root)"
        )
    if not name or "\x00" in name:
        raise ProtocolError(BAD_REQUEST, "file:NAME needs a file name")
    if name.startswith(("/", "\\")):
        raise ProtocolError(FORBIDDEN_SOURCE, "file:NAME is a path relative to the media root")
    root = media_root.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root) or path == root:
        raise ProtocolError(FORBIDDEN_SOURCE, f"{name!r} is outside the media root")
    if not path.is_file():
        raise ProtocolError(BAD_REQUEST, f"no file {name!r} in the media root")
    return path


def list_media(media_root: Path | None, limit: int = 200) -> list[str]:
    """Video files directly offered by the page (names relative to the media root)."""
    if media_root is None or not media_root.is_dir():
        return []
    root = media_root.resolve()
    names = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.name.startswith(".") and p.resolve().is_relative_to(root):
            names.append(str(p.relative_to(root)))
            if len(names) >= limit:
                break
    return names
