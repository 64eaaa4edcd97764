"""Embedded default: use the Redis at REDIS_URL / 127.0.0.1:6379, or start a private one.

`scenekv serve` must start with one command on a machine that has `redis-server` installed but not
running. The child persists (AOF, everysec) under ~/.cache/scenekv/redis so a restart of the service
finds its streams again, listens on loopback only, and stops with the service.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from scenekv.errors import UserError

from .redis_conn import redis_url_default

log = logging.getLogger(__name__)


def answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server is at ``url``: a server still loading its dataset counts (it will serve)."""
    return _probe(url, timeout) in ("ok", "loading")


def _probe(url: str, timeout: float) -> str:
    """'ok', 'loading' (alive, still reading its AOF/RDB: it answers LOADING), 'busy' (it accepted
    the connection but did not answer in time: a loading server replies only between batches of
    keys) or 'down'."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError:
        return "down"
    try:
        client.ping()
        return "ok"
    except redis.BusyLoadingError:
        return "loading"
    except redis.TimeoutError:
        return "busy"
    except (redis.RedisError, OSError):
        return "down"
    finally:
        client.close()


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """A redis-server child process; ``stop()`` (also at exit) shuts it down cleanly.

    Its output goes to ``redis.log`` in the data directory; the tail of it is in the error when the
    server does not come up. A server that answers LOADING (a large AOF being read) is alive: it is
    waited for up to ``load_timeout`` s, as long as it keeps running. A failed start kills the child.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        start_timeout: float = 10.0,
        load_timeout: float = 600.0,
        extra_args: tuple[str, ...] | list[str] = (),
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise UserError(
                "no Redis answers and redis-server is not installed: "
                "install it (apt-get install redis-server) or pass --redis-url"
            )
        self.directory = directory or Path.home() / ".cache" / "scenekv" / "redis"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / "redis.log"
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        with open(self.log_path, "wb") as log_file:  # this start only: its tail explains a failure
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.directory),
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "everysec",
                    "--save",
                    "",
                    "--protected-mode",
                    "yes",
                    *extra_args,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        atexit.register(self.stop)  # from here on the child never outlives us
        try:
            self._wait_ready(start_timeout, load_timeout)
        except BaseException:
            self._kill()
            raise

    def _wait_ready(self, start_timeout: float, load_timeout: float) -> None:
        started = time.monotonic()
        deadline = started + start_timeout
        loading = False
        while True:
            state = _probe(self.url, 0.2)
            if state == "ok":
                return
            if state in ("loading", "busy") and not loading:  # our own child: it is alive
                loading = True
                deadline = max(deadline, started + load_timeout)
                log.info("local redis-server is loading its data set (%s)", self.directory)
            if self.proc.poll() is not None:
                why = f"redis-server exited with status {self.proc.returncode}"
                break
            if time.monotonic() > deadline:
                waited = time.monotonic() - started
                doing = "was still loading" if loading else "did not answer"
                why = f"redis-server {doing} after {waited:.0f}s"
                break
            time.sleep(0.05)
        tail = _tail(self.log_path)
        raise UserError(
            f"could not start a local redis-server (data dir {self.directory}): {why}"
            + (f"; its log ({self.log_path}) ends with:\n{tail}" if tail else "")
        )

    def _kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):  # the connection drops as it shuts down
                redis.Redis.from_url(self.url, socket_timeout=timeout).shutdown()  # flushes the AOF
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)


def ensure_redis(url: str | None) -> tuple[str, str, LocalRedis | None]:
    """(url, how, child): the given/env/default URL if it answers, else a started child.

    An explicit ``url`` that does not answer is an error, not a reason to start another server.
    """
    target = url or redis_url_default()
    if answers(target):
        return target, f"using Redis at {target}", None
    if url:
        raise UserError(f"no Redis answers at {url}")
    child = LocalRedis()
    return (
        child.url,
        f"no Redis at {target}: started a local redis-server at {child.url} (data in {child.directory})",
        child,
    )
