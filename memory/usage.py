"""What a stream costs in Redis, tier by tier and codec by codec (`scenekv memory info`, bench/memory.py).

Computed from the chunk index and the scene records alone: no chunk is read. The content index
(readings per frame, caption words) is counted apart: its entries are small and not in ``bytes``.
"""

from __future__ import annotations

import json


def tiers(metas, scenes, extra: dict) -> dict:
    """What a stream keeps in full detail and what is compacted to one chunk a scene."""
    compacted = {s.index for s in scenes if s.compacted}
    full = [m for m in metas if m.scene not in compacted]
    small = [m for m in metas if m.scene in compacted]
    cap = extra.get("cap_compacted_through")
    policy = json.loads(extra["retention"]) if extra.get("retention") else {}
    return {
        "full": {
            "chunks": len(full),
            "bytes": sum(m.bytes for m in full),
            "from_pts": min((m.first_pts for m in full), default=None),
        },
        "compacted": {"scenes": len(compacted), "chunks": len(small), "bytes": sum(m.bytes for m in small)},
        "retention": {k: v for k, v in policy.items() if v is not None},
        "cap_compacted_through": float(cap) if cap else None,
    }


def kv_dtypes(metas) -> dict[str, dict[str, int]]:
    """Chunks and bytes per KV storage codec (int8, int4, float)."""
    out: dict[str, dict[str, int]] = {}
    for m in metas:
        c = out.setdefault(m.codec, {"chunks": 0, "bytes": 0})
        c["chunks"] += 1
        c["bytes"] += m.bytes
    return out


def content(store, sid: str) -> dict:
    """The content index: frames read, scenes whose caption words are indexed, labels, bytes."""
    return store.index_usage(sid).as_dict()
