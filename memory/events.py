"""A stream's event log (a capped Redis stream): scene.closed, scene.captioned, stream.ended, ...

Most events are added by the Lua step that makes the change they announce (streams.py, scenes.py),
so an event never tells of a write that did not happen; ``add_event`` appends one on its own.
Readers page with ``events`` or block with ``wait_events``; memory/event_feed.py reads many streams
at once for gateways. Torch-free.
"""

from __future__ import annotations

import json

from .records import text
from .redis_conn import StoreBase


def decode_event(eid, fields: dict) -> tuple[str, str, dict]:
    """One entry of a stream's event log: (id, type, data)."""
    return text(eid), text(fields[b"type"]), json.loads(fields[b"data"])


class EventLog(StoreBase):
    def add_event(self, sid: str, type: str, data: dict | None = None) -> str:
        k = self.keys(sid)
        payload = {"type": type, "data": json.dumps(data or {})}
        return text(self.client.xadd(k.events, payload, maxlen=self.events_maxlen, approximate=True))

    def events(
        self, sid: str, after: str | None = None, count: int | None = None
    ) -> list[tuple[str, str, dict]]:
        """(id, type, data) of the stream's events after id ``after`` (default: from the start)."""
        start = "-" if after is None else f"({after}"
        raw = self.client.xrange(self.keys(sid).events, min=start, count=count)
        return [decode_event(i, f) for i, f in raw]

    def wait_events(self, sid: str, after: str = "$", block_ms: int = 1000) -> list[tuple[str, str, dict]]:
        """Block up to ``block_ms`` for events after ``after`` ("$": only new ones); for gateways."""
        raw = self.client.xread({self.keys(sid).events: after}, block=block_ms)
        return [decode_event(i, f) for _, entries in raw or [] for i, f in entries]
