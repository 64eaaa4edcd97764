"""Moving streams stored before the hash-tagged key layout (``stream:SID`` -> ``stream:{SID}``).

Redis Cluster support (commit 13fc06c) put every key of a stream under one hash tag (schema.py).
A stream written before that is invisible to this version, and listing streams would prune its id
from the registry; so the service moves such streams at start, before anything lists them. Kept
while a deployment may still hold one (a stream kept without a TTL, or touched since). Torch-free.
"""

from __future__ import annotations

import redis

from .records import text
from .redis_conn import StoreBase


def migrate_untagged(store: StoreBase) -> list[str]:
    """Move every untagged stream under ``store.prefix`` to the tagged layout, key by key with
    RENAME (TTLs kept); returns the ids moved. Cheap when there is nothing to do: one SMEMBERS and
    one EXISTS per registered stream. A plain Redis only (a cluster never held the old layout: its
    multi-key steps could not run there)."""
    if store.cluster:
        return []
    client = store.client
    moved = []
    registry = store.keys("x").registry
    for sid in sorted(text(x) for x in client.smembers(registry)):
        k = store.keys(sid)
        old = k.untagged_base
        if client.exists(k.stream) or not client.exists(old):
            continue
        # the hash last: a start that dies half way finds the stream still untagged, and goes on
        names = [*client.scan_iter(match=k.untagged_glob, count=1000), old.encode()]
        for name in names:
            rest = text(name)[len(old) :]
            try:
                client.rename(name, k.base + rest)
            except redis.ResponseError as exc:  # expired since the scan: nothing to move
                if "no such key" not in str(exc).lower():
                    raise
        moved.append(sid)
    return moved
