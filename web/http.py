"""Plain HTTP on the WebSocket port: the demo page, /healthz, /metrics, /config.json, and the
handshake checks for /ws (token, Origin, draining) — all through websockets' ``process_request``.

One port for everything keeps the demo a single URL and means no second server dependency.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from scenekv.errors import UserError

from .auth import host_ok, origin_ok, own_host_names, redact_url, token_ok
from .media import MAX_WHOLE, RangeError, byte_range, content_type, read_part, safe_relative, size_of
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .protocol import FORBIDDEN_SOURCE, ProtocolError
from .sources import list_media, media_file

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from .context import GatewayContext

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream: http: https:; connect-src 'self' ws: wss:; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
REASONS = {
    200: "OK",
    206: "Partial Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Content Too Large",
    416: "Range Not Satisfiable",
    421: "Misdirected Request",
    503: "Service Unavailable",
}
CAPTION_TYPES = {
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "jsonl": "application/jsonl; charset=utf-8",
}
MEDIA_READS = 8  # /media files read at once
HEALTH_TTL_S = 1.0  # a /healthz answer is reused this long
_CAPTIONS_PATH = re.compile(r"^/streams/([A-Za-z0-9_-]{1,128})/captions\.(vtt|srt|jsonl)$")


def response(status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    headers["Cache-Control"] = "no-cache"
    headers["X-Content-Type-Options"] = "nosniff"
    for key, value in (extra or {}).items():
        headers[key] = value
    return Response(status, REASONS.get(status, "OK"), headers, body)


def json_response(status: int, payload: dict, extra: dict[str, str] | None = None) -> Response:
    return response(status, json.dumps(payload, indent=1).encode(), "application/json", extra)


def error_response(status: int, code: str, message: str, extra: dict[str, str] | None = None) -> Response:
    return json_response(status, {"type": "error", "code": code, "message": message}, extra)


class HttpRoutes:
    def __init__(self, ctx: GatewayContext) -> None:
        self.ctx = ctx
        self.static_dir = ctx.config.static_dir.resolve()
        self.host_names = own_host_names(ctx.config.host, ctx.config.allowed_hosts)
        self._media_reads = asyncio.Semaphore(MEDIA_READS)
        self._health_now = SharedResult(self._health, HEALTH_TTL_S)

    async def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        result = await self._route(path, request)
        if result is None:  # a WebSocket handshake that passed the checks: is there room for it?
            result = self._room_for(connection)
        status = result.status_code if result is not None else 101
        self.ctx.metrics.http.labels(path=path if path in _KNOWN_PATHS else "other", status=str(status)).inc()
        return result

    async def _route(self, path: str, request: Request) -> Response | None:
        cfg = self.ctx.config
        if not host_ok(request.headers.get("Host"), self.host_names, cfg.host):  # DNS rebinding
            self.ctx.metrics.errors.labels(code="forbidden_host").inc()
            return error_response(
                421, "forbidden_host", "this server does not answer to that Host (see --allow-host)"
            )
        authorized = token_ok(cfg.token, request.headers, request.path)
        if path == "/ws":
            host = request.headers.get("Host")
            if not origin_ok(request.headers.get("Origin"), host, cfg.allowed_origins):
                self.ctx.metrics.errors.labels(code="forbidden_origin").inc()
                return error_response(403, "forbidden_origin", "this Origin may not open the WebSocket")
            if not authorized:
                self.ctx.metrics.errors.labels(code="unauthorized").inc()
                return error_response(
                    401,
                    "unauthorized",
                    "missing or wrong token (Authorization: Bearer T or ?token=T)",
                    {"WWW-Authenticate": 'Bearer realm="scenekv"'},
                )
            if self.ctx.draining:
                return error_response(503, "going_away", "the server is shutting down")
            return None  # go on with the WebSocket handshake
        if path == "/healthz":
            return await self._healthz(authorized)
        if path == "/metrics":
            if not authorized:
                return error_response(401, "unauthorized", "missing or wrong token")
            await self._refresh_encoder_figures()
            return response(200, self.ctx.metrics.render(), METRICS_CONTENT_TYPE)
        if path == "/config.json":  # lists the media root: a thread
            return json_response(200, await asyncio.to_thread(self._page_config, authorized))
        captions = _CAPTIONS_PATH.match(path)
        if path.startswith("/media/") or captions:
            if not authorized:  # the same token rule as /ws
                return error_response(401, "unauthorized", "missing or wrong token")
            if captions:
                return await self._captions(*captions.groups())
            name = unquote(path[len("/media/") :])
            async with self._media_reads:  # reads at once; a body waiting to be sent is <= MAX_PART
                return await asyncio.to_thread(self._media, name, request.headers.get("Range"))
        return self._static(path)

    def _room_for(self, connection: ServerConnection) -> Response | None:
        """503 when the gateway, or this client's address, has as many connections as it may."""
        cfg, open_now = self.ctx.config, list(self.ctx.connections)
        address = _address(connection)
        if len(open_now) >= cfg.max_connections:
            code, message = "too_many_connections", f"this server has {cfg.max_connections} connections open"
        elif sum(1 for c in open_now if _address(c.ws) == address) >= cfg.max_connections_per_client:
            code = "too_many_connections"
            message = f"{cfg.max_connections_per_client} connections from your address are open already"
        else:
            return None
        self.ctx.metrics.errors.labels(code=code).inc()
        return error_response(503, code, message, {"Retry-After": "5"})

    def _media(self, name: str, range_header: str | None) -> Response:
        """A file under --media-root for the player: 206 for a Range, 200 for a whole small file."""
        if any(p.startswith(".") and p not in (".", "..") for p in name.split("/")):  # hidden files
            return error_response(404, "not_found", f"no file {name!r} in the media root")
        try:
            path = media_file(name, self.ctx.config.media_root)
        except ProtocolError as exc:
            status = 403 if exc.code == FORBIDDEN_SOURCE else 404
            return error_response(status, exc.code, str(exc))
        size = size_of(path)
        extra = {"Accept-Ranges": "bytes"}
        try:
            span = byte_range(range_header, size)
            if span is None:
                if size > MAX_WHOLE:
                    return error_response(
                        413, "too_large", f"{size} bytes: ask for it in ranges (Range: bytes=0-)", extra
                    )
                body = read_part(path, 0, size - 1) if size else b""
                return response(200, body, content_type(path), extra)
            first, last = span
            body = read_part(path, first, last)
        except RangeError as exc:
            return error_response(416, "bad_range", str(exc), {**extra, "Content-Range": f"bytes */{size}"})
        extra["Content-Range"] = f"bytes {first}-{last}/{size}"
        return response(206, body, content_type(path), extra)

    async def _captions(self, sid: str, fmt: str) -> Response:
        """The stream's scene captions as `scenekv caption` writes them (same cues, same normalising)."""
        try:
            text = await self.ctx.service.caption_track(sid, fmt)
        except UserError as exc:
            status = 404 if exc.code in ("unknown_stream", "stream_not_found") else 400
            return error_response(status, exc.code, str(exc))
        disposition = {"Content-Disposition": f'attachment; filename="{sid}.{fmt}"'}
        return response(200, text.encode(), CAPTION_TYPES[fmt], disposition)

    async def _refresh_encoder_figures(self) -> None:
        """The encoders' figures for this scrape; one that does not answer shows as down."""
        try:
            snapshot = await asyncio.wait_for(self.ctx.service.encoder_stats(), timeout=5)
        except Exception as exc:
            snapshot = [{"error": f"{type(exc).__name__}: {exc}"}]
        self.ctx.metrics.encoders.snapshot = snapshot

    async def _health(self) -> dict:
        try:
            return await asyncio.wait_for(self.ctx.service.health(), timeout=5)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            return {"redis": {"ok": False, "error": error}, "ray": {"ok": False}, "encoders": []}

    async def _healthz(self, authorized: bool) -> Response:
        """Up or not for anyone (a load balancer's probe); the parts, pids and addresses only with
        the token. One health check a second at most, whoever asks how often (it asks every
        encoder: unbounded, anyone could keep the service's threads busy with it)."""
        health = dict(await self._health_now.get())
        if isinstance(health.get("redis"), dict) and health["redis"].get("url"):
            health["redis"] = {**health["redis"], "url": redact_url(health["redis"]["url"])}
        ok = all(bool(health.get(part, {}).get("ok")) for part in ("redis", "ray")) and not self.ctx.draining
        if not authorized:
            return json_response(200 if ok else 503, {"ok": ok})
        body = {
            "ok": ok,
            **health,
            "model": self.ctx.service.model,
            "redis_how": redact_url(str(getattr(self.ctx.service, "redis_how", ""))),
            "draining": self.ctx.draining,
            "connections": len(self.ctx.connections),
            "streams": len(self.ctx.registry.streams),
        }
        return json_response(200 if ok else 503, body)

    def _page_config(self, authorized: bool) -> dict:
        cfg = self.ctx.config
        model = self.ctx.service.model
        return {
            "model": model.get("model"),
            "random_weights": bool(model.get("random_weights")),
            "world_only": bool(model.get("world_only")),
            "fps": cfg.fps,
            "carriers": cfg.carriers,
            "token_required": bool(cfg.token),
            "media": list_media(cfg.media_root) if authorized else [],
            "max_frame_bytes": cfg.max_frame_bytes,
        }

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "/index.html") else None
        if name is None and path.startswith("/static/"):
            name = safe_relative(unquote(path[len("/static/") :]))
        if not name:
            return error_response(404, "not_found", f"no page at {path}")
        file = (self.static_dir / name).resolve()
        if not file.is_relative_to(self.static_dir) or not file.is_file():
            return error_response(404, "not_found", f"no page at {path}")
        return response(
            200,
            file.read_bytes(),
            _content_type(file),
            {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "Referrer-Policy": "no-referrer"},
        )


class SharedResult:
    """One awaited call's result shared by every caller for ``ttl_s``, and by all who ask while it
    runs: a route anyone may hit costs the service at most one call per ``ttl_s``."""

    def __init__(self, call: Callable[[], Awaitable[dict]], ttl_s: float) -> None:
        self.call, self.ttl_s = call, ttl_s
        self._task: asyncio.Future | None = None
        self._started = 0.0

    async def get(self) -> dict:
        stale = time.monotonic() - self._started > self.ttl_s
        if self._task is None or (self._task.done() and stale):
            self._started = time.monotonic()
            self._task = asyncio.ensure_future(self.call())
        return await asyncio.shield(self._task)


def _address(connection) -> str:
    peer = getattr(connection, "remote_address", None)
    return str(peer[0]) if peer else ""


_KNOWN_PATHS = {"/", "/ws", "/healthz", "/metrics", "/config.json", "/index.html"}  # metric labels


def _content_type(path: Path) -> str:
    if path.suffix == ".js":
        return "text/javascript; charset=utf-8"
    ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return ctype + ("; charset=utf-8" if ctype.startswith("text/") else "")
