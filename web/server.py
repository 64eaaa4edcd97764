"""The gateway: one port serving the WebSocket protocol (/ws), the demo page, /healthz, /metrics.

It owns no model and no Ray: everything goes through a SceneKVService passed in. ``run_until_signal``
is what `scenekv serve` runs (drains on SIGINT/SIGTERM: go_away, wait for in-flight work, close,
then shut the service down); ``GatewayThread`` runs a gateway in a background thread for tests and
for embedding next to other code.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from .config import GatewayConfig
from .context import GatewayContext, Service
from .http import HttpRoutes
from .metrics import GatewayMetrics
from .session import Connection
from .streams import StreamRegistry

log = logging.getLogger(__name__)

_SIZED_LOOPS: weakref.WeakSet = weakref.WeakSet()  # loops given the pool below
BLOCKING_THREADS = 64  # Redis reads hop to threads (the event feed's XREADs wait in theirs)


class Gateway:
    def __init__(self, service: Service, config: GatewayConfig | None = None) -> None:
        config = config or GatewayConfig()
        metrics = GatewayMetrics()
        registry = StreamRegistry(service, metrics, config.progress_interval_s)
        self.ctx = GatewayContext(service, config, metrics, registry)
        self.server: Server | None = None
        self.port: int | None = None
        self._routes = HttpRoutes(self.ctx)

    # what connections and routes share (web/context.py), read here by the gateway itself and tests
    service = property(lambda self: self.ctx.service)
    config = property(lambda self: self.ctx.config)
    metrics = property(lambda self: self.ctx.metrics)
    registry = property(lambda self: self.ctx.registry)
    connections = property(lambda self: self.ctx.connections)

    @property
    def draining(self) -> bool:
        return self.ctx.draining

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if loop not in _SIZED_LOOPS:  # once a loop: gateways hosted one after another share it
            loop.set_default_executor(ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix="scenekv-web"))
            _SIZED_LOOPS.add(loop)
        self.server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._routes.process_request,
            max_size=self.config.hard_max_message_bytes,
            max_queue=2,  # frames read ahead of the handler: 2 x max_size at most per connection
            compression=None,  # frames are JPEG: deflate would burn CPU for nothing
            ping_interval=20,
            ping_timeout=20,
            close_timeout=2,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._release_idle(), name="release-idle")

    async def _release_idle(self) -> None:
        """Release push streams nobody feeds or watches (a camera that went away, a closed tab),
        so their device window, lease and writer do not stay held for ever."""
        idle_s = self.config.idle_s
        while True:
            await asyncio.sleep(min(30.0, max(0.25, idle_s / 4)))
            try:
                await self.service.release_idle(idle_s, set(self.registry.streams))
            except Exception:
                log.exception("releasing idle streams failed")

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}/"

    async def _handle(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self.ctx)
        self.connections.add(conn)
        self.metrics.connections.set(len(self.connections))
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.metrics.connections.set(len(self.connections))

    async def drain(self, drain_s: float | None = None) -> None:
        """Stop accepting, tell clients ``go_away``, let in-flight work finish, then close."""
        drain_s = self.config.drain_s if drain_s is None else drain_s
        self.ctx.draining = True
        if self.server is None:
            return
        self._sweeper.cancel()
        self.server.close(close_connections=False)
        for conn in list(self.connections):
            conn.go_away(int(drain_s * 1000))
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and any(c.busy() for c in self.connections):
            await asyncio.sleep(0.05)
        await asyncio.sleep(min(0.2, drain_s))  # let the writers flush go_away and final answers
        closing = [c.ws.close(1001, "server shutting down") for c in list(self.connections)]
        await asyncio.gather(*closing, return_exceptions=True)
        await self.registry.close()
        try:
            await asyncio.wait_for(self.server.wait_closed(), timeout=5)
        except TimeoutError:
            log.warning("some connections did not close in time")

    async def run_until_signal(
        self,
        *,
        shutdown_service: bool = True,
        on_signal: Callable[[], None] | None = None,
        on_second_signal: Callable[[], None] | None = None,
    ) -> None:
        """`scenekv serve`: serve until SIGINT/SIGTERM, drain, then shut the service down.

        ``on_signal`` runs as the signal arrives (serve arms its hard-stop deadline there);
        ``on_second_signal`` on another one during the drain (serve stops its children and exits)."""
        await self.start()
        log.info("serving the demo page on %s (WebSocket %sws)", self.url, self.url.replace("http", "ws", 1))
        if self.config.token and self.config.token_generated:  # the operator's own is never logged
            log.info("open the page with its token: %s?token=%s", self.url, self.config.token)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        if on_signal is not None:
            on_signal()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # a second Ctrl-C now interrupts the drain for real
            if on_second_signal is not None:
                loop.add_signal_handler(sig, on_second_signal)
        log.info("draining: go_away to %d client(s), %.1f s for in-flight work", len(self.connections),
                 self.config.drain_s)  # fmt: skip
        await self.drain()
        if shutdown_service:
            log.info("shutting the service down")
            await self.service.shutdown()


class GatewayThread:
    """A gateway on an event loop in a daemon thread (tests, notebooks): its own, or, handed a
    BlockingService, that service's loop, so the gateway and the caller's blocking calls share
    the one loop the service's locks and refs belong to."""

    def __init__(self, service: Service, config: GatewayConfig | None = None) -> None:
        self._hosted = getattr(service, "loop", None)  # a BlockingService's loop
        self.gateway = Gateway(getattr(service, "service", service), config)
        self._loop = self._hosted or asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="scenekv-gateway", daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.gateway.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        # asyncio.run's cleanup: what is still pending (a shielded push whose client left) is
        # cancelled and runs its finally blocks, so no stream lock stays held after the loop
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    def start(self) -> GatewayThread:
        if self._hosted is not None:
            self.run(self.gateway.start())
            return self
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise self._error
        return self

    @property
    def http_url(self) -> str:
        return self.gateway.url

    def run(self, coro) -> Any:
        """Run a coroutine (a service call, say) on the gateway's loop, from another thread."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def ws_url(self) -> str:
        return self.gateway.url.replace("http", "ws", 1) + "ws"

    def stop(self, drain_s: float = 0.0) -> None:
        future = asyncio.run_coroutine_threadsafe(self.gateway.drain(drain_s), self._loop)
        future.result(timeout=drain_s + 30)
        if self._hosted is None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
