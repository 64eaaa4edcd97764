"""Who may open the WebSocket: a bearer token (header or ?token=) and, for browsers, the Origin.

Browsers send ``Origin`` on every WebSocket handshake and let any page open a socket to
127.0.0.1, so a page from another site could drive a local server: only the server's own origin
(same host:port) or origins listed with --allow-origin are accepted. Clients that send no Origin
(scripts, other services) are not browsers and rely on the token.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit, urlunsplit


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
