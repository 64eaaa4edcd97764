"""Real-Redis fixtures for the memory tests (no mocks): import the ones a test module uses.

- ``redis_url``: REDIS_URL or redis://127.0.0.1:6379/0; the test fails if nothing answers there
  (scripts/test.sh starts one).
- ``prefix``: a key prefix unique to the test; every key under it is deleted afterwards.
- ``store``: a MemoryStore on that prefix.
- ``own_redis``: a private ``redis-server`` on a free loopback port with AOF (``appendfsync always``)
  in the test's tmp_path, that the test may kill -9 and restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from scenekv.memory import MemoryStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.fail(f"no Redis at {REDIS_URL} ({exc}); run scripts/ensure-redis.sh (scripts/test.sh does)")
    return REDIS_URL


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client) -> str:
    value = f"skvtest:{uuid.uuid4().hex[:12]}:"
    yield value
    drop_prefix(redis_client, value)


@pytest.fixture
def store(redis_url, prefix) -> MemoryStore:
    s = MemoryStore(redis_url, prefix, ttl_s=3600)  # a TTL as a safety net if cleanup is skipped
    yield s
    s.close()


def drop_prefix(client: redis.Redis | str, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own namespace); ``client`` may be a URL."""
    own = isinstance(client, str)
    client = redis.Redis.from_url(client) if own else client
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    if own:
        client.close()


def keys_under(client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{prefix}*", count=1000)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server child with AOF in ``directory``; kill() is SIGKILL, like a crash."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory, self.port = directory, port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--save", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.02)
            finally:
                client.close()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    if not shutil.which("redis-server"):
        pytest.fail("redis-server is not installed: apt-get install -y redis-server (scripts/test.sh does)")
    server = RedisServer(tmp_path, free_port())
    server.start()
    yield server
    server.kill()


def memory_info(sid: str, redis_url: str, prefix: str) -> dict:
    """`scenekv memory info SID --json`, as a user runs it (a real process against the real Redis)."""
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "scenekv.cli", "memory", "info", sid, "--json", "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_URL": redis_url},
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)
