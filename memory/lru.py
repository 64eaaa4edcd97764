"""DeviceLRU: recently used chunks kept on the device, bounded by bytes.

Follow-up questions on a stream tend to hit the same chunks (the same scene, the same anchor);
keeping their device tensors saves a Redis round trip plus the host-to-device copy. The bound is in
bytes of KV, not entries, because chunk sizes vary with the carrier strategy.

``MemoryStore.load_chunks`` keys entries by ``(prefix, sid, generation, cid)``, the generation being
the stream's ``created_at``: a stream deleted and created again under the same id is a different
generation, so its predecessor's KV is never served (and is discarded on the first load that sees
the change).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class DeviceLRU:
    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> None:
        """Insert (or refresh) ``key``; an item larger than the whole budget is not kept."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self.bytes += nbytes
            while self.bytes > self.max_bytes:
                _, (_, n) = self._items.popitem(last=False)
                self.bytes -= n
                self.evictions += 1

    def discard(self, predicate) -> int:
        """Drop every entry whose key satisfies ``predicate`` (e.g. all chunks of a deleted stream)."""
        with self._lock:
            gone = [k for k in self._items if predicate(k)]
            for k in gone:
                self.bytes -= self._items.pop(k)[1]
            return len(gone)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0

    def stats(self) -> dict:
        return {
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "items": len(self._items),
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
        }
