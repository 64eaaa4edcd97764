"""Retention: how much of a stream's past stays in Redis, and in how much detail.

Two tiers, each in seconds and/or bytes (None = no limit):

- ``keep_s`` / ``keep_bytes`` — full detail. Once the stream holds more than ``keep_bytes``, or a
  closed scene ended more than ``keep_s`` before the newest frame, the oldest closed scenes are
  *compacted*: only their representative chunk stays. The representative is the chunk whose pooled
  visual feature (retrieval key) is most similar to the scene's mean feature, i.e. the most typical
  moment of the scene, which is what a later retrieval for that scene should find; when features
  are missing it is the middle chunk.
- ``max_s`` / ``max_bytes`` — hard caps. Past them the oldest chunks are dropped, compacted or not,
  one at a time oldest first, until the stream is under the cap again; a closed scene left without
  chunks is dropped too (an event says so). The open scene is never compacted (it is still growing),
  so a single endless static scene is bounded by the hard cap alone.

Byte figures count the chunk KV blobs and their retrieval keys, the bulk of a stream; scene hashes,
chunk metadata and the capped event log are small and not counted.

The stream hash remembers ``compacted_through``: the end of the newest scene that compaction is done
with (compacted, or closed with fewer than two chunks). The cheap ``keep_s`` test before any scan
looks at the first scene from there on (is it closed and older than ``keep_s``?), so neither a
compacted scene's representative, which stays old forever, nor the old chunks of a long open scene
make every later run rescan the whole stream.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch

from scenekv.errors import UserError

from .store import ChunkMeta, MemoryStore, SceneInfo


@dataclass(frozen=True)
class Retention:
    keep_s: float | None = None
    keep_bytes: int | None = None
    max_s: float | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("keep_s", "keep_bytes", "max_s", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"retention {name} must be a finite number >= 0")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.keep_s, self.keep_bytes, self.max_s, self.max_bytes))

    @classmethod
    def tiers(
        cls, keep_full: float | None, keep_compact: float | None, max_stream_bytes: int | None
    ) -> Retention:
        """The user's three knobs: full KV for the last ``keep_full`` s of stream time, older scenes
        compacted and kept until ``keep_compact`` s old, and never more than ``max_stream_bytes``."""
        return cls(keep_s=keep_full, max_s=keep_compact, max_bytes=max_stream_bytes)

    def as_fields(self) -> dict:
        """How a stream's policy is kept in its hash, so a restarted encoder applies the same one."""
        return {"retention": json.dumps(asdict(self))}

    @classmethod
    def from_fields(cls, fields: dict) -> Retention | None:
        raw = fields.get("retention")
        if not raw:
            return None
        stored = json.loads(raw)  # fields a newer version added are ignored
        return cls(**{k: v for k, v in stored.items() if k in cls.__dataclass_fields__})


@dataclass
class RetentionReport:
    compacted: list[int] = field(default_factory=list)  # scene ids reduced to their representative
    dropped_chunks: list[str] = field(default_factory=list)
    dropped_scenes: list[int] = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    scanned: bool = False  # whether chunks and scenes were listed (the cheap test said "over")


def narrowed(server: dict, asked: dict) -> dict:
    """The server's policy (Retention fields), each field lowered to what a session asked for, never
    raised: a client may keep less than the operator allows, not more."""
    policy = dict(server)
    for name, value in asked.items():
        if name not in Retention.__dataclass_fields__:
            raise UserError(f"unknown retention field {name!r}", code="bad_request")
        if value is None:
            continue
        if not math.isfinite(value) or value < 0:
            raise UserError(f"retention {name} must be a finite number >= 0, got {value}", code="bad_request")
        limit = policy.get(name)
        policy[name] = value if limit is None else min(value, limit)
    return policy


def representative(metas: list[ChunkMeta], features: dict[str, torch.Tensor]) -> str:
    """The chunk most similar to the scene's mean pooled feature; the middle one without features."""
    ids = [m.cid for m in sorted(metas, key=lambda m: m.first_pts)]
    vecs = [features.get(c) for c in ids]
    if any(v is None or v.numel() == 0 for v in vecs):
        return ids[len(ids) // 2]
    stacked = torch.nn.functional.normalize(torch.stack(vecs).float(), dim=1)
    mean = stacked.mean(dim=0)
    return ids[int(torch.argmax(stacked @ mean))]


def enforce(store: MemoryStore, sid: str, policy: Retention, *, owner: str | None = None) -> RetentionReport:
    """Apply ``policy`` to stream ``sid`` now. Idempotent: safe to repeat after a connection error.

    ``owner``: the writer's lease token; its writes are refused if another process took the stream.
    """
    report = RetentionReport()
    if not policy.active:
        return report
    info = store.info(sid)
    report.bytes_before = report.bytes_after = info.bytes
    newest = info.last_pts
    through = _float(info.extra.get("compacted_through"))
    over_keep = policy.keep_bytes is not None and info.bytes > policy.keep_bytes
    if not over_keep and policy.keep_s is not None and newest is not None:
        # the first scene compaction is not done with: closed, and ended more than keep_s ago?
        first = store.scenes(sid, start=through, limit=1)
        over_keep = bool(first) and first[0].closed and first[0].end is not None
        over_keep = over_keep and first[0].end < newest - policy.keep_s
    if not over_keep and not _over(policy.max_s, policy.max_bytes, info.bytes, info.oldest_pts, newest):
        return report
    report.scanned = True
    metas = {m.cid: m for m in store.chunk_index(sid)}
    scenes = store.scenes(sid)
    used = info.bytes

    # 1. compaction of the oldest closed scenes (those before `through` are done already)
    if policy.keep_s is not None or policy.keep_bytes is not None:
        newest_chunk = max((m.first_pts for m in metas.values()), default=None)
        done = through
        for scene in scenes:
            if through is not None and scene.end is not None and scene.end <= through:
                continue
            # complete = every chunk of the scene is written: a later chunk exists, or the stream ended
            complete = info.status == "ended" or (
                newest_chunk is not None and scene.end is not None and newest_chunk >= scene.end
            )
            if not scene.closed or not complete:
                break
            if scene.compacted or len(scene.chunks) < 2:
                done = scene.end
                continue
            too_old = policy.keep_s is not None and newest is not None and scene.end < newest - policy.keep_s
            too_big = policy.keep_bytes is not None and used > policy.keep_bytes
            if not (too_old or too_big):
                break
            used -= _compact(store, sid, scene, metas, owner)
            scene.compacted = True
            report.compacted.append(scene.index)
            done = scene.end
        if done is not None and done != through:
            store.update_stream(sid, {"compacted_through": repr(float(done))}, owner=owner)

    # 2. hard caps. Past max_s every older chunk goes. Over max_bytes, in this order: the oldest
    # compacted scenes (history already reduced), then full scenes compacted oldest first (the cap
    # wins over keep_s, and says so), then whatever is oldest (an endless open scene included).
    order = sorted(metas.values(), key=lambda m: m.first_pts)
    by_index = {s.index: s for s in scenes}
    remaining = {s.index: set(s.chunks) for s in scenes}
    capped = None

    def drop(meta: ChunkMeta) -> None:
        nonlocal used
        used -= store.drop_chunk(sid, meta.cid, meta.scene, owner=owner)
        del metas[meta.cid]
        report.dropped_chunks.append(meta.cid)
        if meta.scene in remaining:
            remaining[meta.scene].discard(meta.cid)

    def over() -> bool:
        return policy.max_bytes is not None and used > policy.max_bytes

    if policy.max_s is not None and newest is not None:
        for meta in order:
            if meta.last_pts >= newest - policy.max_s:
                break
            drop(meta)
    for meta in [m for m in order if m.cid in metas]:  # A: compacted history, oldest first
        if not over():
            break
        scene = by_index.get(meta.scene)
        if scene is not None and scene.compacted:
            drop(meta)
    newest_chunk = max((m.first_pts for m in metas.values()), default=None)
    for scene in scenes:  # B: detail of full scenes, oldest first
        if not over():
            break
        if _compactable(scene, info.status, newest_chunk):
            used -= _compact(store, sid, scene, metas, owner)
            scene.compacted = True
            report.compacted.append(scene.index)
            capped = scene.end
            remaining[scene.index] = {c for c in remaining.get(scene.index, ()) if c in metas}
    for meta in [m for m in order if m.cid in metas]:  # C: the oldest, whatever it is
        if not over():
            break
        drop(meta)
    if capped is not None:  # `memory info` says that the cap, not keep_s, set where full KV starts
        store.update_stream(sid, {"cap_compacted_through": repr(float(capped))}, owner=owner)
    for scene in scenes:
        if scene.closed and scene.chunks and not remaining.get(scene.index):
            data = {"scene": scene.index, "start": scene.start, "end": scene.end}
            store.drop_scene(sid, scene.index, event="scene.dropped", data=data, owner=owner)
            report.dropped_scenes.append(scene.index)
    report.bytes_after = used
    return report


def _compactable(scene: SceneInfo, status: str, newest_chunk: float | None) -> bool:
    """A closed scene whose chunks are all written (a later chunk exists, or the stream ended), not
    compacted yet, with more than its representative to give up."""
    complete = status == "ended" or (
        newest_chunk is not None and scene.end is not None and newest_chunk >= scene.end
    )
    return scene.closed and complete and not scene.compacted and len(scene.chunks) >= 2


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def _over(limit_s: float | None, limit_bytes: int | None, used: int, oldest, newest) -> bool:
    if limit_bytes is not None and used > limit_bytes:
        return True
    return limit_s is not None and oldest is not None and newest is not None and oldest < newest - limit_s


def _compact(
    store: MemoryStore, sid: str, scene: SceneInfo, metas: dict[str, ChunkMeta], owner: str | None
) -> int:
    present = [metas[c] for c in scene.chunks if c in metas]
    if len(present) < 2:
        return 0
    keys = store.load_keys(sid, [m.cid for m in present])
    keep = representative(present, {c: k.feature for c, k in keys.items()})
    freed = 0
    for meta in present:
        if meta.cid != keep:
            freed += store.drop_chunk(sid, meta.cid, scene.index, owner=owner)
            del metas[meta.cid]
    store.put_scene(
        sid,
        scene.index,
        scene.start,
        {"compacted": 1, "representative": keep},
        event="scene.compacted",
        data={"kept": keep, "dropped": len(present) - 1, "start": scene.start, "end": scene.end},
        owner=owner,
    )
    return freed
