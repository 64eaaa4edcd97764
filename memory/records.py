"""What the store hands back and the errors it raises, and how plain values cross Redis.

Torch-free, so the gateway and the CLI can name a stream's records without loading a model stack.
Hash values come back as bytes and go in as strings: the helpers here are the one place that says
how (``None`` is written as "", dicts and lists as compact JSON, booleans as 0/1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from scenekv.errors import UserError


class StreamNotFound(UserError):
    code = "stream_not_found"


class StreamExists(UserError):
    code = "stream_exists"


class StreamBusy(UserError):
    """Another process holds (or took over) the stream's writer lease."""

    code = "stream_busy"


class ChunkNotFound(UserError):
    code = "chunk_not_found"


@dataclass
class StreamInfo:
    """What a stream costs and where it stands: for the CLI, /metrics and attach."""

    sid: str
    source: str
    model: str
    carriers: str
    fps: float
    status: str
    created_at: float
    last_pts: float | None
    next_pos: int
    next_index: int
    bytes: int  # chunk blobs + retrieval keys
    chunks: int
    scenes: int
    events: int
    oldest_pts: float | None  # first pts of the oldest chunk still stored
    ttl_s: float | None  # seconds until the stream hash expires (None: never)
    extra: dict = field(default_factory=dict)
    # newest frame the live writer had appended at its last write (>= last_pts, which is the newest
    # frame stored in Redis and where a restarted stream resumes); None when never written
    newest_pts: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ChunkMeta:
    cid: str
    first_pts: float
    last_pts: float
    position: int
    span: int  # RoPE positions covered: position .. position + span
    tokens: int
    first_frame: int
    last_frame: int
    frames: int
    scene: int | None
    bytes: int
    codec: str = "float"  # how its KV is stored (memory/quant.py); chunks written before codecs: float


@dataclass
class SceneInfo:
    index: int
    start: float
    end: float | None
    closed: bool
    caption: str
    chunks: list[str]
    frames: int
    compacted: bool
    extra: dict = field(default_factory=dict)


def text(value) -> str:
    """A Redis reply (bytes) or a Python value as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def float_or_none(value) -> float | None:
    """A stored float; "" (how ``field_args`` writes None) and a missing field read as None."""
    return None if value in (None, b"", "") else float(value)


def field_args(mapping: dict) -> list:
    """``mapping`` flattened to the field/value ARGV the Lua steps take (HSET-able values)."""
    out = []
    for k, v in mapping.items():
        if v is None:
            v = ""
        elif isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"))
        elif isinstance(v, bool):
            v = int(v)
        out += [k, v]
    return out
