"""BlockingService: SceneKVService for callers without an event loop (the CLI, benchmarks, tests).

The service is async only; this runs it on an event loop of its own, in a daemon thread, and makes
each of its coroutines a blocking call and each answer stream a plain iterator. Attributes that are
not coroutines (``store``, ``model``, ``pool``, ``encoder``) are the service's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .service import SceneKVService


class BlockingService:
    def __init__(self, **options: Any) -> None:
        """``options``: SceneKVService's arguments (its constructor, which starts Ray and loads the
        model, runs in the calling thread)."""
        self.service = SceneKVService(**options)
        self.loop = asyncio.new_event_loop()  # a GatewayThread handed this service serves on it too
        self._thread = threading.Thread(target=self.loop.run_forever, name="scenekv-service", daemon=True)
        self._thread.start()

    def run(self, coro) -> Any:
        """Run a coroutine on the service's loop; its result (or its exception, raised here)."""
        if not self.loop.is_running():
            coro.close()
            raise RuntimeError("the service is shut down")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except BaseException:  # Ctrl-C while waiting: the coroutine stops too
            future.cancel()
            raise

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.service, name)
        if inspect.iscoroutinefunction(attr):
            return functools.wraps(attr)(lambda *a, **kw: self.run(attr(*a, **kw)))
        if name == "ask":  # returns an async iterator
            return functools.wraps(attr)(lambda *a, **kw: self._iterate(lambda: attr(*a, **kw)))
        return attr

    def _iterate(self, make: Callable[[], AsyncIterator]) -> Iterator:
        """An async iterator made on the loop, read item by item from this thread; closed on the
        loop when the reader stops early (a cancelled answer frees its slot)."""
        stream = self.run(_made(make))
        try:
            while True:
                try:
                    yield self.run(anext(stream))
                except StopAsyncIteration:
                    return
        finally:  # the service then cancels the answer on its encoder (Questions.ask)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None and self.loop.is_running():
                with contextlib.suppress(RuntimeError):  # a next() still running, cancelled above
                    self.run(aclose())

    def shutdown(self, timeout: float = 60.0) -> None:
        """SceneKVService.shutdown, then the loop's thread stops."""
        try:
            self.run(self.service.shutdown(timeout))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


async def _made(make: Callable[[], AsyncIterator]) -> AsyncIterator:
    return make()
