"""Every watched stream's event log through one blocking read, on redis.asyncio (for gateways).

A gateway that held a thread in a 500 ms XREAD per watched stream stopped scaling at its thread
pool's size. Here one XREAD names all the streams a gateway watches, and Redis answers with those
that have news: N watched streams cost one connection and no thread. On a Redis Cluster each
stream's keys sit in its own slot and one XREAD may not span slots, so there is one read per slot
(concurrent, one connection each); ``read`` returns as soon as any of them has news, and the others
stay in flight for the next call, so one slot's events never wait for another slot's block.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.crc import key_slot

from .events import decode_event
from .redis_conn import CLUSTER_SCHEME
from .schema import keys_for

Event = tuple[str, str, str, dict]  # (stream id, event id, type, data)


class EventFeed:
    def __init__(self, url: str, prefix: str, *, socket_timeout: float = 10.0) -> None:
        self.url, self.prefix = url, prefix
        self._timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": 5.0}
        self._client: aioredis.Redis | aioredis.RedisCluster | None = None
        self._connecting = asyncio.Lock()
        self.cluster = False
        self._inflight: dict[int, asyncio.Task] = {}  # slot -> its XREAD, kept across calls

    async def client(self) -> aioredis.Redis | aioredis.RedisCluster:
        """Connected on first use, in the loop that uses it, once (concurrent first callers share
        one client). A cluster node's plain URL is found out with INFO cluster, as
        memory/redis_conn.connect does."""
        async with self._connecting:
            if self._client is None:
                self._client = await self._connect()
        return self._client

    async def _connect(self) -> aioredis.Redis | aioredis.RedisCluster:
        if self.url.startswith(CLUSTER_SCHEME):
            self.cluster = True
            return self._cluster("redis://" + self.url[len(CLUSTER_SCHEME) :])
        plain = aioredis.Redis.from_url(self.url, **self._timeouts)
        try:
            self.cluster = bool((await plain.info("cluster")).get("cluster_enabled"))
        except aioredis.RedisError:
            self.cluster = False
        if not self.cluster:
            return plain
        await plain.aclose()
        return self._cluster(self.url)

    def _cluster(self, url: str) -> aioredis.RedisCluster:
        return aioredis.RedisCluster.from_url(url, **self._timeouts)

    def key(self, sid: str) -> str:
        return keys_for(self.prefix, sid).events

    async def read(self, cursors: Mapping[str, str], block_ms: int = 500) -> list[Event]:
        """Events after each stream's cursor (an event id; "0-0": from the start), waiting up to
        ``block_ms`` for the first; in log order per stream. On a cluster, the slots' reads that
        have not answered yet carry on into the next call (its cursors reach a slot whose read was
        still in flight with that read's answer: callers skip events at or before their cursor)."""
        if not cursors:
            await asyncio.sleep(block_ms / 1000)
            return []
        client = await self.client()
        groups: dict[int, dict[str, str]] = defaultdict(dict)
        for sid, after in cursors.items():
            key = self.key(sid)
            groups[key_slot(key.encode()) if self.cluster else 0][key] = after
        for slot, group in groups.items():
            if slot not in self._inflight:
                self._inflight[slot] = asyncio.ensure_future(client.xread(group, block=block_ms))
        waiting = [self._inflight[slot] for slot in groups]
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        replies = []
        for slot, task in list(self._inflight.items()):
            if task.done():
                del self._inflight[slot]
                replies.append(task.result())  # a failed read raises here: the caller retries
        by_key = {self.key(sid): sid for sid in cursors}
        out: list[Event] = []
        for reply in replies:
            for key, entries in _items(reply):
                sid = by_key.get(key.decode() if isinstance(key, bytes) else key)
                if sid is not None:  # a stream that left while its slot's read was in flight
                    out += [(sid, *e) for e in _decoded(entries)]
        return out

    async def backlog(self, sid: str) -> list[Event]:
        """Every event the stream's log holds now."""
        client = await self.client()
        return [(sid, *e) for e in _decoded(await client.xrange(self.key(sid)))]

    async def close(self) -> None:
        for task in self._inflight.values():
            task.cancel()
        self._inflight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _decoded(entries) -> list[tuple[str, str, dict]]:
    """Entries as (id, type, data); a malformed one (not SceneKV's writing) becomes an "unknown"
    event, so its stream's cursor still moves past it."""
    out = []
    for eid, fields in entries:
        try:
            out.append(decode_event(eid, fields))
        except (KeyError, ValueError):
            out.append((eid.decode() if isinstance(eid, bytes) else str(eid), "unknown", {}))
    return out


def _items(reply) -> list:
    """XREAD's reply as (key, entries) pairs: RESP2 gives a list, RESP3 a dict."""
    if not reply:
        return []
    return list(reply.items()) if isinstance(reply, dict) else [(k, v) for k, v in reply]
