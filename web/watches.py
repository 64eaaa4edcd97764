"""The WebSocket ``watch.add`` / ``watch.remove`` messages: standing questions on the session's stream.

A watch is stored with the stream (memory/watches.py) and evaluated by the encoder on every frame it
reads (workers/watch_runner.py); this handler only checks and stores it. Every client on the stream
is told through the stream's event log, as the store writes it (``watch.added``, ``watch.removed``,
``watch.hit``), so whichever gateway a client is on, it hears each once; a client that adds a watch
that is there already gets its ``watch.added`` directly. Only the stream's owner (a connection
holding its ``stream_key``) adds and removes watches; every client hears them. Bounded:
``MAX_PER_CONNECTION`` watches added by one connection (and still there), the store's
``MAX_WATCHES_PER_STREAM`` per stream, and the question rate limit. A webhook's host passes the URL
sources' rule (ingest/hosts.py) before the watch is stored, with the operator's rules stored beside
it: the encoder checks the host against them again before each delivery and posts to the address
it checked.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from scenekv.errors import UserError
from scenekv.ingest.hosts import HostRefused, allowed_addresses

from . import protocol as P
from .protocol import ProtocolError, encode

if TYPE_CHECKING:
    from .session import Connection

MAX_PER_CONNECTION = 8


async def handle_watch_add(conn: Connection, msg: P.WatchAdd) -> None:
    st = conn.require_owner(msg.id)
    mine = conn.watches_added.get(st.sid, set())
    if msg.id not in mine and len(mine) >= MAX_PER_CONNECTION:
        raise ProtocolError(P.RATE_LIMITED, f"at most {MAX_PER_CONNECTION} watches a connection", id=msg.id)
    if not conn.question_bucket.take():
        raise ProtocolError(
            P.RATE_LIMITED, f"more than {conn.cfg.questions_per_min:g} questions/min", id=msg.id
        )
    rules = tuple(conn.cfg.allowed_source_hosts)
    if msg.webhook is not None:
        host = urlsplit(msg.webhook).hostname or ""
        try:  # refused now, with the reason; the encoder checks again before each delivery
            await asyncio.to_thread(allowed_addresses, host, rules)
        except HostRefused as exc:
            raise ProtocolError(exc.code, f"webhook: {exc}", id=msg.id) from None
    try:
        added = await conn.service.add_watch(
            st.sid,
            msg.id,
            msg.text,
            webhook=msg.webhook,
            cooldown_s=msg.cooldown_s,
            webhook_allow=rules if msg.webhook is not None else (),
        )
    except UserError as exc:  # taken id, full stream, a text naming nothing: the error keeps the id
        raise ProtocolError(exc.code, str(exc), id=msg.id) from None
    conn.watches_added.setdefault(st.sid, set()).add(msg.id)
    if not added:  # there already: the log has nothing new to tell, so the adder hears it here
        for watch in await conn.service.watches(st.sid):
            if watch.id == msg.id:
                conn.deliver(encode("watch.added", **watch.as_message()))


async def handle_watch_remove(conn: Connection, msg: P.WatchRemove) -> None:
    st = conn.require_owner(msg.id)
    if not await conn.service.remove_watch(st.sid, msg.id):
        raise ProtocolError(P.UNKNOWN_WATCH, f"no watch {msg.id!r} on this stream", id=msg.id)
    conn.watches_added.get(st.sid, set()).discard(msg.id)


async def send_watches(conn: Connection, sid: str) -> None:
    """What a client that attaches is told: the stream's watches, then their kept hits."""
    watches = await conn.service.watches(sid)
    hits = await conn.service.watch_hits(sid)
    for watch in watches:
        conn.deliver(encode("watch.added", **watch.as_message()))
    for hit in hits:
        conn.deliver(encode("watch.hit", **hit.as_message()))


def watch_event(kind: str, data: dict) -> str | None:
    """The client message for a watch event of the stream's log (None: not a watch event)."""
    if kind == "watch.added":
        from scenekv.memory.watches import Watch

        return encode("watch.added", **Watch.from_record_dict(data).as_message())
    if kind == "watch.removed":
        return encode("watch.removed", id=data.get("id"))
    if kind == "watch.hit":
        return encode("watch.hit", **data)
    return None
