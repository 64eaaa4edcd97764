"""Watches: standing questions on a stream ("tell me when a red square appears") and their hits.

Stored with the stream (schema.py: ``S:watches``, ``S:watchhits``, ``S:watchorder``), so a watch
outlives the connection that added it, the gateway it came through and the encoder that evaluates
it; it goes when the stream goes. Every change is one Lua step that also logs it in the stream's
event log (``watch.added``, ``watch.removed``, ``watch.hit``): gateways relay those to every client
on the stream, and a hit is logged by the step that stores it, so it is told once however often the
encoder that found it replays its readings (a hit is known by its watch and its start). Torch-free.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import redis

from scenekv.errors import UserError

from .records import text
from .redis_conn import StoreBase

MAX_WATCHES_PER_STREAM = 16
HITS_KEPT = 1000  # per stream; the oldest go first


class WatchRefused(UserError):
    """A watch the stream cannot take: its id is taken by another watch, or the stream is full."""


@dataclass(frozen=True)
class Watch:
    id: str
    text: str
    webhook: str | None = None
    cooldown_s: float = 0.0  # an appearance starting this soon after the previous one's end is not told
    created: float = 0.0  # when it was added: a watch removed and added again under its id is another
    # the operator's host rules (--allow-source-host) when it was added: each delivery checks the
    # webhook's host against them again, so a name that later resolves inside is still refused
    webhook_allow: tuple[str, ...] = ()

    def record(self) -> str:
        """The stored JSON (also the ``watch.added`` event's data); keys sorted, so equal is equal."""
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    def as_message(self) -> dict:
        """What clients are told (``watch.added``): the webhook's URL is the adder's, never shown."""
        return {
            "id": self.id,
            "text": self.text,
            "cooldown_s": self.cooldown_s,
            "webhook": bool(self.webhook),
        }

    @classmethod
    def from_record(cls, raw: str | bytes) -> Watch:
        return cls.from_record_dict(json.loads(raw))

    @classmethod
    def from_record_dict(cls, data: dict) -> Watch:
        fields = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        fields["webhook_allow"] = tuple(fields.get("webhook_allow") or ())
        return cls(**fields)


@dataclass(frozen=True)
class WatchHit:
    """One appearance of what a watch asks for: ``end`` is None while it lasts (a second hit with
    the same start carries it); ``evidence``: the spans of frames that showed it."""

    watch_id: str
    text: str
    start: float
    end: float | None = None
    scene_id: int | None = None
    evidence: list[tuple[float, float]] = field(default_factory=list)
    quiet: bool = False  # inside the watch's cooldown: kept for a restarted encoder, never told

    def as_message(self) -> dict:
        """The ``watch.hit`` message's fields (and the stored JSON): absent fields are left out."""
        out: dict = {"id": self.watch_id, "text": self.text, "start": self.start}
        if self.end is not None:
            out["end"] = self.end
        if self.scene_id is not None:
            out["scene_id"] = self.scene_id
        out["evidence"] = [{"start": a, "end": b} for a, b in self.evidence]
        return out

    def record(self) -> str:
        """The stored JSON: the message's fields, and ``quiet`` when it is."""
        return json.dumps(
            {**self.as_message(), **({"quiet": True} if self.quiet else {})}, separators=(",", ":")
        )

    @classmethod
    def from_message(cls, data: dict) -> WatchHit:
        return cls(
            str(data["id"]),
            str(data.get("text", "")),
            float(data["start"]),
            None if data.get("end") is None else float(data["end"]),
            None if data.get("scene_id") is None else int(data["scene_id"]),
            [(float(e["start"]), float(e["end"])) for e in data.get("evidence", [])],
            bool(data.get("quiet")),
        )


class WatchRecords(StoreBase):
    def add_watch(self, sid: str, watch: Watch, max_watches: int = MAX_WATCHES_PER_STREAM) -> bool:
        """Store ``watch`` (True; ``watch.added`` logged), or nothing when the very same watch is there
        (False). WatchRefused when another watch has its id or the stream has ``max_watches``."""
        k = self.keys(sid)
        check_watch_id(watch.id)
        try:
            args = [watch.id, watch.record(), max_watches, self.events_maxlen]
            return bool(self._run("WATCH_ADD", [k.stream, k.watches, k.events], args))
        except redis.ResponseError as exc:
            if "WATCHEXISTS" in str(exc):
                raise WatchRefused(
                    f"watch {watch.id!r} exists with other settings", code="duplicate_id"
                ) from None
            if "WATCHFULL" in str(exc):
                raise WatchRefused(
                    f"the stream has {max_watches} watches, the most it may; remove one first",
                    code="rate_limited",
                ) from None
            raise

    def remove_watch(self, sid: str, watch_id: str) -> bool:
        """Remove the watch and its hits (``watch.removed`` logged); False if there was none."""
        k = self.keys(sid)
        data = json.dumps({"id": watch_id})
        args = [watch_id, data, self.events_maxlen]
        return bool(self._run("WATCH_REMOVE", [k.watches, k.watch_hits, k.watch_order, k.events], args))

    def has_watches(self, sid: str) -> bool:
        return bool(self.client.hlen(self.keys(sid).watches))

    def watches(self, sid: str) -> list[Watch]:
        """The stream's watches, oldest first."""
        raw = self.client.hgetall(self.keys(sid).watches)
        return sorted((Watch.from_record(v) for v in raw.values()), key=lambda w: (w.created, w.id))

    def put_watch_hit(self, sid: str, watch: Watch, hit: WatchHit) -> int:
        """Store and log a hit of ``watch``: 1 new, 2 its end (stored once), 0 nothing changed (known
        already, or the watch was removed or replaced)."""
        k = self.keys(sid)
        args = [
            watch.id,
            watch.record(),
            repr(float(hit.start)),
            hit.record(),
            "1" if hit.end is not None else "",
            self.events_maxlen,
            HITS_KEPT,
            "1" if hit.quiet else "",
        ]
        keys = [k.stream, k.watches, k.watch_hits, k.watch_order, k.events]
        return int(self._run("WATCH_HIT", keys, args))

    def watch_hits(self, sid: str, watch_id: str | None = None, *, quiet: bool = False) -> list[WatchHit]:
        """The stream's kept hits (of one watch, or all), in time order; ``quiet``: also those the
        cooldown kept from being told (for the encoder, never for clients)."""
        k = self.keys(sid)
        fields = [text(f) for f in self.client.zrange(k.watch_order, 0, -1)]
        if watch_id is not None:
            fields = [f for f in fields if f.rpartition("|")[0] == watch_id]
        if not fields:
            return []
        hits = [WatchHit.from_message(json.loads(r)) for r in self.client.hmget(k.watch_hits, fields) if r]
        return [h for h in hits if quiet or not h.quiet]


def check_watch_id(watch_id: str) -> str:
    """Watch ids name hits as ``<id>|<start>``: no ``|``, 1-128 characters."""
    if not isinstance(watch_id, str) or not 0 < len(watch_id) <= 128 or "|" in watch_id:
        raise UserError(f"bad watch id {watch_id!r}: 1-128 characters, no '|'", code="bad_request")
    return watch_id


def new_watch(
    watch_id: str,
    text: str,
    *,
    webhook: str | None = None,
    cooldown_s: float = 0.0,
    webhook_allow: tuple[str, ...] = (),
) -> Watch:
    """A watch stamped with the time it is added."""
    return Watch(
        check_watch_id(watch_id), text, webhook, float(cooldown_s), time.time(), tuple(webhook_allow)
    )
