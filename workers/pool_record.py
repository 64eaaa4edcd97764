"""The record of a deployment's shared encoder pool, kept in Redis so every gateway finds the same one.

One JSON string, ``{prefix}encoder_pool``: the pool's ``id`` (a random name every encoder of the pool
is built with, so a gateway never adopts encoders that merely share its Ray namespace), the actor
``names``, the ``model`` asked for, and who started it when. The first gateway, or `scenekv encoders
up`, claims it with SET NX: of several starting at once, one wins and the others use its record.
Plain Redis, no Ray (workers/encoder_pool.py decides, this remembers), as placement.py.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import redis

from scenekv.memory.schema import encoder_pool_key
from scenekv.memory.scripts import DROP_POOL_RECORD, SETTLE_POOL_MODEL


def new_record(count: int, model: str, settings: dict) -> dict:
    """The record a pool of ``count`` encoders of ``model`` would get if this caller starts it;
    ``settings``: what else its encoders are built with (compared when a gateway joins)."""
    return {
        "id": uuid.uuid4().hex[:12],
        "names": [f"encoder-{i}" for i in range(count)],
        "model": model,
        "settings": settings,
        "started": round(time.time(), 3),
        "by": f"{socket.gethostname()}:{os.getpid()}",
    }


class PoolRecord:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = encoder_pool_key(prefix)
        self._drop = client.register_script(DROP_POOL_RECORD)
        self._settle = client.register_script(SETTLE_POOL_MODEL)

    def read(self) -> dict | None:
        raw = self.client.get(self.key)
        return json.loads(raw) if raw is not None else None

    def claim(self, record: dict) -> dict:
        """Store ``record`` unless a pool is recorded already; returns the one that holds."""
        if self.client.set(self.key, json.dumps(record), nx=True):
            return record
        held = self.read()
        return held if held is not None else self.claim(record)  # dropped meanwhile: try again

    def settle_model(self, pool_id: str, model: str) -> None:
        """Record the model that ``auto`` resolved to, so a later --model is checked against it."""
        self._settle(keys=[self.key], args=[pool_id, model])

    def drop(self, pool_id: str) -> bool:
        """Forget pool ``pool_id`` (its encoders were stopped, or none of them is left)."""
        return bool(self._drop(keys=[self.key], args=[pool_id]))
