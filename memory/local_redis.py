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

log = logging.getLogger(__name__)


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
        return True
    except (redis.RedisError, OSError, ValueError):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRedis:
    """A redis-server child process; ``stop()`` (also at exit) shuts it down cleanly."""

    def __init__(self, directory: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise UserError(
                "no Redis answers and redis-server is not installed: "
                "install it (apt-get install redis-server) or pass --redis-url"
            )
        self.directory = directory or Path.home() / ".cache" / "scenekv" / "redis"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
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
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not answers(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise UserError(f"could not start a local redis-server (data dir {self.directory})")
            time.sleep(0.05)
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(redis.RedisError):  # the connection drops as it shuts down
                redis.Redis.from_url(self.url).shutdown()  # flushes the AOF; no RDB is configured
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def ensure_redis(url: str | None) -> tuple[str, str, LocalRedis | None]:
    """(url, how, child): the given/env/default URL if it answers, else a started child.

    An explicit ``url`` that does not answer is an error, not a reason to start another server.
    """
    from .store import redis_url_default

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
