"""N encoders, each an EncoderActor with its own model, spread over the Ray cluster's nodes.

A new stream goes to the encoder with the fewest streams; the choice is recorded in Redis
(placement.py). When a call finds its encoder dead, the stream is re-placed on the least-loaded
encoder that answers and re-opened there from Redis (the encoder's StreamResumed / replay
protocol does the rest), so a client keeps its stream while Ray restarts the dead one. With one
encoder there is nowhere to move: callers wait for Ray's restart, as before.

The pool pickles (its Redis client is made anew where it lands), so a DecoderActor carries it and
re-places its own stream.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections import Counter
from dataclasses import replace

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from scenekv.memory.redis_conn import connect

from .encoder_config import EncoderConfig
from .placement import Placement

log = logging.getLogger(__name__)

NAMESPACE = "scenekv"
ALIVE_TIMEOUT_S = 2.0


def gpu_encoders(device: str | None) -> int:
    """GPUs the cluster offers to encoders, one each: 0 unless the device is left to SceneKV
    (None, "auto", "cuda"); a pinned "cuda:N" or "cpu" runs as asked, without a GPU reservation."""
    if device not in (None, "auto", "cuda"):
        return 0
    return int(ray.cluster_resources().get("GPU", 0))


def node_slots(gpus: bool) -> list[str]:
    """Node ids to place encoders on, in turn: every alive node with CPUs (the driver's first; a
    gateway node started with --num-cpus=0 takes none) or, for GPU encoders, one entry per GPU so
    each GPU gets an encoder before any gets two."""
    here = ray.get_runtime_context().get_node_id()
    nodes = sorted(
        (n for n in ray.nodes() if n.get("Alive")), key=lambda n: (n["NodeID"] != here, n["NodeID"])
    )
    if gpus:
        return [n["NodeID"] for n in nodes for _ in range(int(n.get("Resources", {}).get("GPU", 0)))]
    return [n["NodeID"] for n in nodes if n.get("Resources", {}).get("CPU", 0) > 0]


class EncoderPool:
    def __init__(self, handles: dict[str, ray.actor.ActorHandle], redis_url: str, prefix: str) -> None:
        self.handles = handles
        self.redis_url, self.prefix = redis_url, prefix
        self._placement: Placement | None = None
        self._seen: dict[str, str] = {}  # sid -> encoder, as this pool last found it

    def known(self, sid: str) -> ray.actor.ActorHandle | None:
        """The stream's encoder as last found here, without asking Redis (for status reads, which
        may be a move behind; calls that change a stream use for_stream)."""
        name = self.known_name(sid)
        return self.handles[name] if name is not None else None

    def known_name(self, sid: str) -> str | None:
        name = self._seen.get(sid)
        return name if name in self.handles else None

    @classmethod
    def start(
        cls, actor_cls, count: int, model: str, redis_url: str, config: EncoderConfig, *, gpus: bool = False
    ) -> EncoderPool:
        """``count`` named encoders, node by node (soft affinity: a full node lets Ray choose)."""
        slots = node_slots(gpus) or [None]
        tag = uuid.uuid4().hex[:6]  # names unique per service: two services never share an encoder
        sharing = Counter(slots[i % len(slots)] for i in range(count))  # encoders per node
        cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")}
        handles = {}
        for i in range(count):
            name = f"encoder-{i}-{tag}"
            node = slots[i % len(slots)]
            strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node else "DEFAULT"
            threads = config.threads or max(1, int(cpus.get(node) or os.cpu_count() or 1) // sharing[node])
            handles[name] = actor_cls.options(
                name=name, namespace=NAMESPACE, num_gpus=1 if gpus else 0, scheduling_strategy=strategy
            ).remote(model, redis_url, replace(config, threads=threads))
        return cls(handles, redis_url, config.prefix)

    def __getstate__(self) -> dict:
        return {"handles": self.handles, "redis_url": self.redis_url, "prefix": self.prefix}  # not _seen

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["handles"], state["redis_url"], state["prefix"])

    @property
    def placement(self) -> Placement:
        if self._placement is None:
            self._placement = Placement(connect(self.redis_url), self.prefix)
        return self._placement

    @property
    def names(self) -> list[str]:
        return list(self.handles)

    def first(self):
        return next(iter(self.handles.values()))

    def for_stream(self, sid: str, *, place: bool = True) -> tuple[str, ray.actor.ActorHandle]:
        """The stream's encoder: its record, or (none, or an encoder this pool does not have) the
        least-loaded one that answers. ``place`` off (reads: info, questions on stored streams):
        without a record, the least-loaded encoder, and nothing is written."""
        seen = self.placement.encoder_of(sid)
        if seen in self.handles:
            self._seen[sid] = seen
            return seen, self.handles[seen]
        if not place:
            name = self._by_load()[0]
            return name, self.handles[name]
        return self._place(sid, seen, exclude=())

    def forget(self, sid: str) -> None:
        """This pool's memory of the stream's encoder is stale (a call to it failed)."""
        self._seen.pop(sid, None)

    def replace(self, sid: str, failed: str) -> tuple[str, ray.actor.ActorHandle]:
        """``failed`` did not answer for ``sid``: move the stream to the least-loaded encoder that
        does (or to whichever encoder another caller moved it to first)."""
        seen = self.placement.encoder_of(sid)
        if seen != failed and seen in self.handles:
            self._seen[sid] = seen
            return seen, self.handles[seen]  # moved already
        name, handle = self._place(sid, seen, exclude=(failed,))
        if name != failed:
            log.warning("stream %s: encoder %s is down; continuing on %s", sid, failed, name)
        return name, handle

    def _place(self, sid: str, seen: str | None, exclude) -> tuple[str, ray.actor.ActorHandle]:
        order = self._by_load(exclude)
        choice = next((n for n in order if n not in exclude and self.alive(n)), None)
        if choice is None:  # nothing else answers: stay (the caller waits for Ray's restart)
            if exclude:
                return exclude[0], self.handles[exclude[0]]
            choice = order[0]
        for _ in range(3):  # another pool's choice wins, unless it names an encoder unknown here
            name = self.placement.move(sid, seen, choice)
            if name in self.handles:
                break
            seen = name
        else:
            name = choice
        self._seen[sid] = name
        return name, self.handles[name]

    def _by_load(self, exclude=()) -> list[str]:
        """Encoders by the streams placed on them, fewest first; ``exclude`` last."""
        loads = self.placement.loads(self.handles)
        return sorted(self.handles, key=lambda n: (n in exclude, loads[n]))

    def alive(self, name: str, timeout: float = ALIVE_TIMEOUT_S) -> bool:
        try:
            ray.get(self.handles[name].pid.remote(), timeout=timeout)
            return True
        except Exception:
            return False

    def release(self, sid: str) -> None:
        self._seen.pop(sid, None)
        self.placement.release(sid)

    def close(self) -> None:
        self.placement.forget_encoders(self.handles)
