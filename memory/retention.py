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
chunk metadata, the capped event log and the content index are small and not counted. The content
index is kept by pts, so a compacted scene keeps its readings; the caps' drops trim them.

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

from .records import ChunkMeta, SceneInfo
from .store import MemoryStore


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
        """From the stream hash (str or bytes values); None for a stream stored without a policy."""
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
    used = info.bytes
    newest_chunk = store.newest_chunk_pts(sid)
    dropped_from: set[int] = set()  # scenes that lost chunks: dropped too once they have none left

    # 1. compaction of the oldest closed scenes, walking forward from `through` (done before it)
    if policy.keep_s is not None or policy.keep_bytes is not None:
        done = through
        for scene in _scenes_from(store, sid, through):
            if through is not None and scene.end is not None and scene.end <= through:
                continue
            if not scene.closed or not _complete(scene, info.status, newest_chunk):
                break
            if scene.compacted or len(scene.chunks) < 2:
                done = scene.end
                continue
            too_old = policy.keep_s is not None and newest is not None and scene.end < newest - policy.keep_s
            too_big = policy.keep_bytes is not None and used > policy.keep_bytes
            if not (too_old or too_big):
                break
            used -= _compact(store, sid, scene, owner)
            report.compacted.append(scene.index)
            done = scene.end
        if done is not None and done != through:
            store.update_stream(sid, {"compacted_through": repr(float(done))}, owner=owner)

    # 2. hard caps, each a walk from the oldest chunk that stops at the first one it keeps: past
    # max_s every older chunk goes; over max_bytes, in this order, the oldest history (compacted
    # scenes, and closed ones of a single chunk), then full scenes compacted oldest first (the cap
    # wins over keep_s, and says so), then whatever is oldest (an endless open scene included).
    def over() -> bool:
        return policy.max_bytes is not None and used > policy.max_bytes

    def drop_while(keep_going) -> None:
        nonlocal used
        while True:
            head = store.oldest_chunks(sid, RETENTION_PAGE)
            gone = 0
            for meta in head:
                if not keep_going(meta):
                    return
                used -= store.drop_chunk(sid, meta.cid, meta.scene, owner=owner)
                report.dropped_chunks.append(meta.cid)
                if meta.scene is not None:
                    dropped_from.add(meta.scene)
                gone += 1
            if len(head) < RETENTION_PAGE or not gone:
                return

    scene_cache: dict[int, SceneInfo | None] = {}

    def scene_of(meta: ChunkMeta) -> SceneInfo | None:
        if meta.scene not in scene_cache:
            scene_cache[meta.scene] = store.scene_or_none(sid, meta.scene) if meta.scene is not None else None
        return scene_cache[meta.scene]

    def history(meta: ChunkMeta) -> bool:
        scene = scene_of(meta)
        if scene is None:
            return False
        single = scene.closed and len(scene.chunks) < 2 and _complete(scene, info.status, newest_chunk)
        return scene.compacted or single

    if policy.max_s is not None and newest is not None:
        drop_while(lambda m: m.last_pts < newest - policy.max_s)
    capped = None
    if over():
        drop_while(lambda m: over() and history(m))  # A
    if over():  # B: from the scene of the oldest chunk left, forward
        head = store.oldest_chunks(sid, 1)
        first = scene_of(head[0]) if head else None
        for scene in _scenes_from(store, sid, first.start if first is not None else None):
            if not over():
                break
            if _compactable(scene, info.status, newest_chunk):
                freed = _compact(store, sid, scene, owner)
                if freed:
                    used -= freed
                    report.compacted.append(scene.index)
                    capped = scene.end
            elif not scene.closed:
                break  # the open scene and what follows it cannot be compacted
    if over():
        drop_while(lambda m: over())  # C
    if capped is not None:  # `memory info` says that the cap, not keep_s, set where full KV starts
        store.update_stream(sid, {"cap_compacted_through": repr(float(capped))}, owner=owner)
    for index in sorted(dropped_from):
        scene = store.scene_or_none(sid, index)
        if scene is not None and scene.closed and not scene.chunks:
            data = {"scene": scene.index, "start": scene.start, "end": scene.end}
            store.drop_scene(sid, scene.index, event="scene.dropped", data=data, owner=owner)
            report.dropped_scenes.append(scene.index)
    if report.dropped_chunks:  # the content index keeps what every scene still kept shows
        _trim_index(store, sid)
    report.bytes_after = used
    return report


RETENTION_PAGE = 64  # chunks or scenes read per round trip by a retention walk


def _scenes_from(store: MemoryStore, sid: str, start: float | None):
    """Scenes in time order from ``start`` (inclusive), a page at a time, as the walk goes."""
    seen: set[int] = set()
    while True:
        page = [s for s in store.scenes(sid, start=start, limit=RETENTION_PAGE) if s.index not in seen]
        if not page:
            return
        for scene in page:
            seen.add(scene.index)
            yield scene
        start = page[-1].start


def _complete(scene: SceneInfo, status: str, newest_chunk: float | None) -> bool:
    """Every chunk of the scene is written: a later chunk exists, or the stream ended."""
    return status == "ended" or (
        newest_chunk is not None and scene.end is not None and newest_chunk >= scene.end
    )


def _compactable(scene: SceneInfo, status: str, newest_chunk: float | None) -> bool:
    """A closed scene whose chunks are all written, not compacted yet, with more than its
    representative to give up."""
    return (
        scene.closed
        and _complete(scene, status, newest_chunk)
        and not scene.compacted
        and len(scene.chunks) >= 2
    )


def _trim_index(store: MemoryStore, sid: str) -> None:
    """Drop content-index entries of what the caps dropped: a compacted scene keeps the readings of its
    whole span (not only of its representative chunk); a full scene that lost its oldest chunks (an
    endless open one) keeps those of the chunks left; a dropped scene keeps none."""
    first = store.scenes(sid, limit=1)
    if not first:
        return
    before = first[0].start
    head = store.oldest_chunks(sid, 1)
    if not first[0].compacted and head:
        before = max(before, head[0].first_pts)
    store.trim_index(sid, before)


def _float(value) -> float | None:
    return None if value in (None, "") else float(value)


def _over(limit_s: float | None, limit_bytes: int | None, used: int, oldest, newest) -> bool:
    if limit_bytes is not None and used > limit_bytes:
        return True
    return limit_s is not None and oldest is not None and newest is not None and oldest < newest - limit_s


def _compact(store: MemoryStore, sid: str, scene: SceneInfo, owner: str | None) -> int:
    present = list(store.chunk_metas(sid, scene.chunks).values())
    scene.compacted = True
    if len(present) < 2:
        return 0
    keys = store.load_keys(sid, [m.cid for m in present])
    keep = representative(present, {c: k.feature for c, k in keys.items()})
    freed = 0
    for meta in present:
        if meta.cid != keep:
            freed += store.drop_chunk(sid, meta.cid, scene.index, owner=owner)
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
