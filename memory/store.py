"""MemoryStore: every Redis read and write of SceneKV's stream memory, one class for its callers.

It is the sum of one module per idea, all on one client (redis_conn.py): the stream record and its
lease (streams.py), chunks (chunks.py, the only part that needs torch), scenes (scenes.py), the
event log (events.py), the content index (content_index.py) and watches (watches.py). Key names
are in schema.py, the Lua steps in scripts.py. Reads that QA does per question (a set of chunks,
all retrieval keys) are one round trip each (MGET / HGETALL).
"""

from __future__ import annotations

from .chunks import ChunkStore
from .content_index import ContentIndex
from .events import EventLog
from .scenes import SceneRecords
from .streams import StreamRecords
from .watches import WatchRecords


class MemoryStore(StreamRecords, ChunkStore, SceneRecords, EventLog, ContentIndex, WatchRecords):
    """Stream memory in one Redis, under ``prefix``; thread-safe (redis-py pools connections).

    ``MemoryStore(redis_url=None, prefix=DEFAULT_PREFIX, *, ttl_s=7 days, events_maxlen=10_000,
    socket_timeout=10.0, client=None)``; the expiry policy is redis_conn.StoreBase's.
    """
