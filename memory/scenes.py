"""A stream's scene records: what SceneTiling decided, each scene's chunks, and its caption.

A scene's chunk list is kept server-side (scripts.py), so the chunk writer and retention never race
on it; ``put_scene`` adds its event at most once per scene and type, so a retried or re-sent scene
is announced once. Torch-free.
"""

from __future__ import annotations

import json

from scenekv.errors import UserError

from .records import SceneInfo, field_args, float_or_none, text
from .redis_conn import StoreBase


class SceneRecords(StoreBase):
    def put_scene(
        self,
        sid: str,
        index: int,
        start: float,
        fields: dict,
        *,
        event: str = "",
        data: dict | None = None,
        owner: str | None = None,
        only_new: bool = False,
    ) -> str | None:
        """Create or update scene ``index``; ``event`` is appended at most once per scene and type.

        ``only_new``: set the fields only if the scene has no record yet. ``owner``: the writer's
        lease token (refused with StreamBusy when another process holds the lease).
        """
        k = self.keys(sid)
        event_id = self._run(
            "PUT_SCENE",
            [k.scene(index), k.scenes, k.events, k.stream, k.owner],
            [
                index,
                repr(float(start)),
                self._ttl_ms,
                event,
                json.dumps({"scene": index, **(data or {})}),
                self.events_maxlen,
                owner or "",
                "1" if only_new else "",
                *field_args({"index": index, "start": start, **fields}),
            ],
        )
        return text(event_id) if event_id else None

    def drop_scene(
        self,
        sid: str,
        index: int,
        *,
        event: str = "",
        data: dict | None = None,
        owner: str | None = None,
    ) -> bool:
        """Remove scene ``index``'s record; ``event`` is added by the same step, only if it was there.

        Returns whether a record was removed (False on a repeat: no second event).
        """
        k = self.keys(sid)
        return bool(
            self._run(
                "DROP_SCENE",
                [k.scene(index), k.scenes, k.stream, k.events, k.owner],
                [index, owner or "", event, json.dumps(data or {}), self.events_maxlen],
            )
        )

    def set_caption(self, sid: str, index: int, caption: str) -> None:
        """Write a scene's caption (qa/) and announce it with a ``scene.captioned`` event."""
        scene = self.scene(sid, index)
        self.put_scene(
            sid, index, scene.start, {"caption": caption}, event="scene.captioned", data={"caption": caption}
        )

    def scene_or_none(self, sid: str, index: int) -> SceneInfo | None:
        raw = self.client.hgetall(self.keys(sid).scene(index))
        return _scene_info(raw) if raw else None

    def scene(self, sid: str, index: int) -> SceneInfo:
        raw = self.client.hgetall(self.keys(sid).scene(index))
        if not raw:
            raise UserError(f"stream {sid!r} has no scene {index}", code="scene_not_found")
        return _scene_info(raw)

    def scene_at(self, sid: str, pts: float) -> int | None:
        """The id of the stored scene holding ``pts`` (a closed scene, or the stream's last one)."""
        k = self.keys(sid)
        ids = self.client.zrevrangebyscore(k.scenes, repr(float(pts)), "-inf", start=0, num=1)
        if not ids:
            return None
        end = self.client.hget(k.scene(text(ids[0])), "end")
        end = float_or_none(text(end)) if end is not None else None
        if end is not None and end <= pts:
            return None  # after the last stored scene: the open one, not stored yet
        return int(text(ids[0]))

    def scenes(self, sid: str, start: float | None = None, limit: int | None = None) -> list[SceneInfo]:
        """Scenes in time order; with ``start``, only those starting at or after it; at most ``limit``."""
        k = self.keys(sid)
        lo = "-inf" if start is None else repr(float(start))
        if limit is None:
            ids = self.client.zrangebyscore(k.scenes, lo, "+inf")
        else:
            ids = self.client.zrangebyscore(k.scenes, lo, "+inf", start=0, num=limit)
        pipe = self.client.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(k.scene(text(i)))
        return [_scene_info(raw) for raw in pipe.execute() if raw]


def _scene_info(raw: dict) -> SceneInfo:
    h = {text(a): text(b) for a, b in raw.items()}
    known = {"index", "start", "end", "closed", "caption", "chunks", "frames", "compacted"}
    return SceneInfo(
        index=int(h["index"]),
        start=float(h["start"]),
        end=float_or_none(h.get("end")),
        closed=h.get("closed") == "1",
        caption=h.get("caption", ""),
        chunks=_chunk_list(h.get("chunks")),
        frames=int(h.get("frames") or 0),
        compacted=h.get("compacted") == "1",
        extra={a: b for a, b in h.items() if a not in known and not a.startswith("event:")},
    )


def _chunk_list(value: str | None) -> list[str]:
    if value in (None, "", "{}"):  # Lua's cjson writes an empty table as {}
        return []
    return [str(c) for c in json.loads(value)]
