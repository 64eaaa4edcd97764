"""Who may use the server: the Host a request names, a bearer token (header or ?token=) and, for
browsers, the Origin.

A page on another site can make a victim's browser talk to a server on 127.0.0.1 by giving its own
name an address there (DNS rebinding): the browser then sends that name as ``Host`` and treats the
server as the page's own origin. So every route first checks that ``Host`` is a name this server
answers to (``host_ok``): loopback names, its own name when bound beyond loopback, an IP address
(rebinding needs a name), or one allowed with --allow-host.

Browsers send ``Origin`` on every WebSocket handshake and let any page open a socket to
127.0.0.1, so a page from another site could drive a local server: only the server's own origin
(same host:port) or origins listed with --allow-origin are accepted. Clients that send no Origin
(scripts, other services) are not browsers and rely on the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Collection
from urllib.parse import parse_qs, urlsplit, urlunsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


def own_host_names(bound: str, allowed: Collection[str] = ()) -> frozenset[str]:
    """The names a server bound to ``bound`` answers to, lower-case, with the allowed ones."""
    names = set(LOOPBACK_NAMES) | {a.strip().lower().strip("[]") for a in allowed if a.strip()}
    if not _is_loopback(bound):  # reachable from elsewhere: by the machine's own names as well
        names |= {bound.lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
    return frozenset(n for n in names if n)


def host_ok(host_header: str | None, names: frozenset[str], bound: str) -> bool:
    """Whether a request's ``Host`` names this server (``names`` from ``own_host_names``)."""
    if not host_header:
        return False  # HTTP/1.1 requires it; a browser always sends it
    try:
        name = (urlsplit(f"//{host_header.strip()}").hostname or "").rstrip(".")
    except ValueError:
        return False
    if "*" in names or name in names or name.endswith(".localhost"):  # *.localhost is loopback (RFC 6761)
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return address.is_loopback or not _is_loopback(bound)


def _is_loopback(bound: str) -> bool:
    if bound.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bound.strip("[]")).is_loopback
    except ValueError:
        return False


def token_ok(expected: str | None, headers, path: str) -> bool:
    """True when no token is configured, or the request carries it (constant-time compare)."""
    if not expected:
        return True
    given = ""
    auth = headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    else:
        given = (parse_qs(urlsplit(path).query).get("token") or [""])[0]
    return hmac.compare_digest(given.encode(), expected.encode())


def origin_ok(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the server's own host:port, or an explicitly allowed origin."""
    if origin is None:
        return True
    origin = origin.rstrip("/").lower()
    if "*" in allowed or origin in {a.rstrip("/").lower() for a in allowed}:
        return True
    netloc = urlsplit(origin).netloc
    return bool(host) and netloc == host.lower()


def redact_url(url: str) -> str:
    """A Redis URL without its password, for /healthz and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
