"""Connecting to Redis, and what every part of the store shares: client, prefix, TTL, Lua steps.

A plain ``redis://`` URL may point at a Redis Cluster node: ``connect`` asks the server (``INFO
cluster``) so one URL works for both, as memory/event_feed.py does for its asyncio client. Writes
are Lua steps (scripts.py) whose refusals become SceneKV errors here, once for every module.
Torch-free.
"""

from __future__ import annotations

import os

import redis

from scenekv.errors import UserError

from . import scripts
from .records import StreamBusy, StreamNotFound
from .schema import DEFAULT_PREFIX, StreamKeys, keys_for

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CLUSTER_SCHEME = "redis+cluster://"
DEFAULT_TTL_S = 7 * 24 * 3600.0
EVENTS_MAXLEN = 10_000
TTL_GRACE = 1.25

# the Lua steps of scripts.py the store runs (registered once per client; redis-py caches the SHA)
_STEPS = (
    "WRITE_CHUNK",
    "DROP_CHUNK",
    "PUT_SCENE",
    "DROP_SCENE",
    "CREATE_STREAM",
    "DELETE_STREAM",
    "TOUCH_STREAM",
    "UPDATE_STREAM",
    "CLAIM_OWNER",
    "RELEASE_OWNER",
    "INDEX_PUT",
    "INDEX_TRIM",
    "WATCH_ADD",
    "WATCH_REMOVE",
    "WATCH_HIT",
    "INDEX_HITS",
)


def redis_url_default() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def connect(url: str, socket_timeout: float = 10.0) -> redis.Redis | redis.RedisCluster:
    """A client for ``url``: redis-py's RedisCluster for ``redis+cluster://`` and for a plain
    ``redis://`` URL that turns out to be a cluster node (``INFO cluster``), else a plain client."""
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": min(5.0, socket_timeout)}
    if url.startswith(CLUSTER_SCHEME):
        return redis.RedisCluster.from_url("redis://" + url[len(CLUSTER_SCHEME) :], **timeouts)
    client = redis.Redis.from_url(url, **timeouts)
    try:
        clustered = bool(client.info("cluster").get("cluster_enabled"))
    except redis.RedisError:  # not up yet, or INFO refused: a plain client, errors come as before
        return client
    if not clustered:
        return client
    client.close()
    return redis.RedisCluster.from_url(url, **timeouts)


class StoreBase:
    """One Redis under ``prefix``, the expiry policy, and the Lua steps; thread-safe (redis-py
    pools connections). The record, chunk, scene and event parts of MemoryStore build on it.

    Expiry: with ``ttl_s`` set, every key a write touches gets a TTL of 1.25 x ttl_s, and ``touch``
    (called by RollingMemory at least every ttl_s / 4 of activity) refreshes all keys of the stream,
    so an idle stream disappears between ttl_s and 1.25 x ttl_s after its last activity and an
    active one never loses a key. ``ttl_s=None`` keeps streams until deleted.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        prefix: str = DEFAULT_PREFIX,
        *,
        ttl_s: float | None = DEFAULT_TTL_S,
        events_maxlen: int = EVENTS_MAXLEN,
        socket_timeout: float = 10.0,
        client: redis.Redis | None = None,
    ) -> None:
        self.url = redis_url or redis_url_default()
        self.prefix = keys_for(prefix, "x").prefix
        self.ttl_s = ttl_s
        self.events_maxlen = events_maxlen
        self.client = client or connect(self.url, socket_timeout)
        self.cluster = isinstance(self.client, redis.RedisCluster)
        self._scripts = {name: self.client.register_script(getattr(scripts, name)) for name in _STEPS}

    def keys(self, sid: str) -> StreamKeys:
        return keys_for(self.prefix, sid)

    @property
    def _ttl_ms(self) -> int:
        return 0 if self.ttl_s is None else max(1, int(self.ttl_s * TTL_GRACE * 1000))

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.RedisError as exc:
            raise UserError(
                f"cannot reach Redis at {self.url}: {exc} (set REDIS_URL or --redis-url)",
                code="redis_unavailable",
            ) from exc

    def close(self) -> None:
        self.client.close()

    def _run(self, name: str, keys: list[str], args: list):
        try:
            return self._scripts[name](keys=keys, args=args)
        except redis.ResponseError as exc:
            if "NOSTREAM" in str(exc):
                raise StreamNotFound(f"stream is gone (deleted or expired): {keys[0]}") from exc
            if "NOTOWNER" in str(exc):
                raise StreamBusy(
                    f"{keys[0]}: another process took over this stream (its writer lease holds another "
                    "token); this write was refused"
                ) from exc
            raise
