"""N encoders, each an EncoderActor with its own model, spread over the Ray cluster's nodes.

A deployment on a Ray cluster has one pool for all its gateways (``join``): detached actors named
``encoder-<i>`` in the namespace of the Redis prefix, recorded in Redis (workers/pool_record.py);
the first gateway or `scenekv encoders up` starts them, later ones find them with no model load.
A process on its own local Ray has a private pool (``start``), killed when it stops.

A new stream goes to the encoder with the fewest streams; the choice is recorded in Redis
(placement.py). When a call finds its encoder dead, the stream is re-placed on the least-loaded
encoder that answers and re-opened there from Redis (the encoder's StreamResumed / replay
protocol does the rest), so a client keeps its stream while Ray restarts the dead one. With one
encoder there is nowhere to move: callers wait for Ray's restart, as before.

The pool pickles (its Redis client is made anew where it lands), so a DecoderActor carries it and
re-places its own stream.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections import Counter
from dataclasses import replace

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from scenekv.errors import UserError
from scenekv.memory.redis_conn import connect

from .encoder_config import EncoderConfig
from .placement import Placement
from .pool_record import PoolRecord, new_record

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


def pool_namespace(prefix: str) -> str:
    """The Ray namespace of a deployment's shared encoders: one per Redis key prefix, so two
    deployments on one cluster never share encoders (give each its own prefix)."""
    return f"{NAMESPACE}:{prefix}"


def _settings(config: EncoderConfig) -> dict:
    """What else than the model a pool's encoders are built with, as the record keeps it."""
    return {
        "device": config.device,
        "dtype": config.dtype,
        "captions": config.captions,
        "rolling": repr(config.rolling),
        "scheduling": repr(config.scheduling),
    }


def _create(
    actor_cls,
    names,
    model: str,
    redis_url: str,
    config: EncoderConfig,
    *,
    gpus: bool,
    namespace: str,
    shared: bool = False,
) -> dict[str, ray.actor.ActorHandle]:
    """The named encoders, node by node (soft affinity: a full node lets Ray choose). ``shared``:
    detached (they outlive the process that starts them) and found if they exist already."""
    slots = node_slots(gpus) or [None]
    sharing = Counter(slots[i % len(slots)] for i in range(len(names)))  # encoders per node
    cpus = {n["NodeID"]: n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")}
    handles = {}
    for i, name in enumerate(names):
        node = slots[i % len(slots)]
        strategy = NodeAffinitySchedulingStrategy(node, soft=True) if node else "DEFAULT"
        threads = config.threads or max(1, int(cpus.get(node) or os.cpu_count() or 1) // sharing[node])
        options = {"lifetime": "detached", "get_if_exists": True} if shared else {}
        handles[name] = actor_cls.options(
            name=name, namespace=namespace, num_gpus=1 if gpus else 0, scheduling_strategy=strategy, **options
        ).remote(model, redis_url, replace(config, threads=threads))
    return handles


class EncoderPool:
    def __init__(
        self,
        handles: dict[str, ray.actor.ActorHandle],
        redis_url: str,
        prefix: str,
        pool_id: str = "",
        *,
        shared: bool = False,
    ) -> None:
        self.handles = handles
        self.redis_url, self.prefix = redis_url, prefix
        self.pool_id = pool_id  # the id its encoders carry (describe_model's "pool_id")
        self.shared = shared  # the deployment's pool: other gateways use it too, it outlives this one
        self.claimed = False  # this process started the shared pool (EncoderPool.join)
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
        """This process's own ``count`` encoders (a private pool: they die with it), node by node."""
        tag = uuid.uuid4().hex[:6]  # names unique per service: two services never share an encoder
        names = [f"encoder-{i}-{tag}" for i in range(count)]
        config = replace(config, pool_id=tag)
        handles = _create(actor_cls, names, model, redis_url, config, gpus=gpus, namespace=NAMESPACE)
        return cls(handles, redis_url, config.prefix, tag)

    @classmethod
    def join(
        cls,
        actor_cls,
        count: int,
        model: str,
        redis_url: str,
        config: EncoderConfig,
        *,
        gpus: bool = False,
        count_asked: bool = False,
    ) -> EncoderPool:
        """The deployment's shared pool (workers/pool_record.py): the encoders its record names,
        found by name in the prefix's namespace, started (detached) where they are missing; with no
        record yet, ``count`` encoders built with ``config``, claimed for every later gateway.
        Several gateways may join at once: one claim wins, and Ray makes each named actor once.
        ``claimed`` on the pool: this call made the record (its start failing undoes it)."""
        record = PoolRecord(connect(redis_url), config.prefix)
        mine = new_record(count, model, _settings(config))
        held = record.claim(mine)
        if model != "auto" and held["model"] not in ("auto", model):
            raise UserError(
                f"this deployment's encoders run {held['model']}, not {model}: `scenekv encoders "
                "down` first to change the model (or leave --model out to use theirs)"
            )
        if count_asked and count != len(held["names"]):
            log.warning(
                "using the deployment's %d encoders, not %d: `scenekv encoders down` first to change",
                len(held["names"]),
                count,
            )
        differ = sorted(k for k, v in mine["settings"].items() if held.get("settings", {}).get(k) != v)
        if differ:
            log.warning(
                "the deployment's encoders were started with other %s: theirs apply, not this "
                "process's (`scenekv encoders status` shows them)",
                ", ".join(differ),
            )
        config = replace(config, pool_id=held["id"])
        handles = _create(
            actor_cls,
            held["names"],
            held["model"],
            redis_url,
            config,
            gpus=gpus,
            namespace=pool_namespace(config.prefix),
            shared=True,
        )
        pool = cls(handles, redis_url, config.prefix, held["id"], shared=True)
        pool.claimed = held["id"] == mine["id"]
        return pool

    @classmethod
    def find(cls, redis_url: str, prefix: str, *, recorded: bool = False) -> EncoderPool | None:
        """The deployment's shared pool as recorded, with the encoders of it that exist (none
        started), or the encoders its namespace holds when there is no record (unless ``recorded``);
        None when there are none."""
        held = PoolRecord(connect(redis_url), prefix).read()
        namespace, handles = pool_namespace(prefix), {}
        if held is None and recorded:
            return None
        if held is None:  # no record (Redis lost it?): whatever encoders the namespace has
            found = ray.util.list_named_actors(all_namespaces=True)
            names = sorted(a["name"] for a in found if a["namespace"] == namespace)
            if not names:
                return None
        for name in held["names"] if held is not None else names:
            with contextlib.suppress(ValueError):
                handles[name] = ray.get_actor(name, namespace=namespace)
        if not handles:
            return None
        return cls(handles, redis_url, prefix, held["id"] if held else "", shared=True)

    def record(self) -> dict | None:
        """The shared pool's record in Redis (workers/pool_record.py); None for a private pool."""
        return PoolRecord(self.placement.client, self.prefix).read() if self.shared else None

    def __getstate__(self) -> dict:
        keep = ("handles", "redis_url", "prefix", "pool_id", "shared")  # not _seen
        return {k: getattr(self, k) for k in keep}

    def __setstate__(self, state: dict) -> None:
        shared = state.pop("shared")
        self.__init__(**state, shared=shared)

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

    def stats(self, timeout: float = 2.0) -> list[dict]:
        """One dict per encoder: its node, pid, device, open streams and work counts
        (EncoderActor.stats); an encoder that does not answer in ``timeout`` has ``error`` instead."""
        refs = {name: e.stats.remote() for name, e in self.handles.items()}
        deadline = time.monotonic() + timeout
        out = []
        for name, ref in refs.items():
            try:
                out.append({"name": name, **ray.get(ref, timeout=max(0.01, deadline - time.monotonic()))})
            except Exception as exc:
                out.append({"name": name, "error": f"{type(exc).__name__}: {exc}"})
        return out

    def close(self) -> None:
        """This process is done with the pool: a private pool's placements go (its encoders are
        being killed); a shared pool's stay, with the encoders, for the other gateways."""
        if not self.shared:
            self.placement.forget_encoders(self.handles)

    def stop(self, timeout: float) -> None:
        """Stop the encoders for good (`scenekv encoders down`): each detaches its streams (written
        to Redis; each resumes on its next attach), then is killed; its placements and, for a shared
        pool, the pool's record go."""
        try:
            ray.get([e.shutdown.remote() for e in self.handles.values()], timeout=timeout)
        except Exception as exc:
            log.warning("an encoder did not detach its streams (%s); killing it", type(exc).__name__)
        for actor in self.handles.values():
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.placement.forget_encoders([*self.handles, *(self.record() or {}).get("names", [])])
        if self.shared:
            PoolRecord(self.placement.client, self.prefix).drop(self.pool_id)
