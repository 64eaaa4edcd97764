"""What a SceneKVService runs on: Redis, Ray, the memory store and the encoders.

Started together so a part that fails (no Redis, a model that cannot load, a cluster that cannot
place an encoder) is one clear error with nothing left running; stopped in reverse, within a
deadline. Embedded defaults: a local Ray (``ray.init`` on loopback, small object store) unless
``ray_address`` joins a cluster; the Redis at ``redis_url`` / REDIS_URL / 127.0.0.1:6379, else a
private redis-server child; the model ``auto`` (default checkpoint, or the tiny random model
offline); one encoder per GPU of the cluster, or one on a CPU-only one (``encoders``), streams
placed on the least-loaded (workers/encoder_pool.py). On a cluster (``ray_address``) the encoders
are the deployment's shared pool: found if another gateway or `scenekv encoders up` started them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable

import ray

from scenekv.errors import UserError
from scenekv.memory import MemoryStore, RollingConfig
from scenekv.memory.local_redis import ensure_redis
from scenekv.memory.migrate_untagged import migrate_untagged

from .actors import EncoderActor
from .encoder_config import EncoderConfig
from .encoder_pool import NAMESPACE, EncoderPool, gpu_encoders, pool_namespace
from .pool_record import PoolRecord
from .scheduler_policy import SchedulerPolicy

log = logging.getLogger(__name__)


class Runtime:
    def __init__(
        self,
        *,
        model: str,
        redis_url: str | None,
        ray_address: str | None,
        device: str | None,
        dtype: str | None,
        prefix: str,
        rolling: dict | None,
        captions: bool,
        num_cpus: int | None,
        worker_logs: bool,
        encoders: int | None,
        load_timeout: float,
        scheduling: SchedulerPolicy | None = None,
        start_pool: bool = True,
    ) -> None:
        """Start everything, or raise with nothing left running (see SceneKVService for the options).

        On a cluster, ``start_pool`` off (a one-off command): the deployment's pool if it runs,
        else encoders of this process's own, stopped with it (it never starts the shared pool)."""
        if encoders is not None and encoders < 1:  # before anything starts, so nothing is left behind
            raise UserError(f"--encoders must be at least 1, got {encoders}")
        self.ray_address = ray_address or os.environ.get("RAY_ADDRESS") or None
        self.redis_url, self.redis_how, self._redis_child = ensure_redis(redis_url)
        if self.ray_address and self._redis_child is not None:
            self._redis_child.stop()
            raise UserError(
                f"no Redis answers at {redis_url or 'REDIS_URL / 127.0.0.1:6379'}: on a Ray cluster the "
                "deployment's Redis must be one every gateway and encoder reaches (--redis-url or REDIS_URL)"
            )
        log.info(self.redis_how)
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            start_ray(self.ray_address, num_cpus, worker_logs)
        self.store = MemoryStore(self.redis_url, prefix)
        moved = migrate_untagged(self.store)
        if moved:
            log.info("moved %d streams to the hash-tagged key layout (Redis Cluster ready)", len(moved))
        if model == "auto" and not self.ray_address:  # decided here: the caller's log says which and why
            from scenekv.vlm.loading import resolve_auto

            model = resolve_auto()
        config = EncoderConfig(
            device=device,
            dtype=dtype,
            prefix=prefix,
            rolling=RollingConfig(**(rolling or {})),
            captions=captions,
            scheduling=scheduling or SchedulerPolicy(),
        )
        pool = None
        try:  # fails here, loudly, if the model cannot load (the actor's own error, e.g. UserError)
            gpus = gpu_encoders(device)
            count = encoders if encoders is not None else max(1, gpus)
            if gpus and count > gpus:
                raise UserError(
                    f"{count} encoders need {count} GPUs; the cluster has {gpus} (or --device cpu)"
                )
            if self.ray_address and start_pool:  # a cluster: the deployment's pool, shared by its gateways
                pool = EncoderPool.join(
                    EncoderActor,
                    count,
                    model,
                    self.redis_url,
                    config,
                    gpus=gpus > 0,
                    count_asked=encoders is not None,
                )
            elif self.ray_address and (found := EncoderPool.find(self.redis_url, prefix, recorded=True)):
                pool = found  # a one-off command: the deployment's pool as it runs, never started here
            else:
                if self.ray_address:
                    log.info(
                        "no encoder pool runs for prefix %r on this cluster: this process starts encoders "
                        "of its own, stopped when it ends (`scenekv encoders up` starts the deployment's)",
                        prefix,
                    )
                pool = EncoderPool.start(EncoderActor, count, model, self.redis_url, config, gpus=gpus > 0)
            self.model = _described(pool, model, load_timeout)
            if pool.claimed:
                PoolRecord(self.store.client, prefix).settle_model(pool.pool_id, self.model["model"])
            self.pool = pool
        except Exception as exc:
            if pool is not None and pool.claimed:  # the shared pool this process started: undone
                with contextlib.suppress(Exception):
                    if isinstance(exc, ForeignEncoders):  # not its to stop
                        PoolRecord(self.store.client, prefix).drop(pool.pool_id)
                    else:
                        pool.stop(timeout=5.0)
            for actor in pool.handles.values() if pool is not None and not pool.shared else ():
                ray.kill(actor, no_restart=True)  # a shared pool's encoders may serve other gateways
            self.store.close()
            self._stop_ray_and_redis()
            raise

    def encoder_stats(self, timeout: float = 2.0) -> list[dict]:
        """One dict per encoder (EncoderPool.stats)."""
        return self.pool.stats(timeout)

    def health(self) -> dict:
        redis_ok = True
        try:
            self.store.ping()
        except Exception:
            redis_ok = False
        keep = ("name", "node", "node_id", "device", "pid", "streams", "error")
        return {
            "redis": {"ok": redis_ok, "url": self.redis_url},
            "ray": {"ok": ray.is_initialized()},
            "model": self.model,
            "encoders": [{k: e[k] for k in keep if k in e} for e in self.encoder_stats()],
        }

    def shutdown(self, left: Callable[[], float], also_kill: Iterable[ray.actor.ActorHandle] = ()) -> None:
        """Detach every stream from the encoders (each resumes on attach), then kill the encoders
        and ``also_kill``, stop Ray and a private Redis; ``left()``: seconds left for a step. An
        encoder that does not detach in time is killed (what Redis acknowledged stays).

        A shared pool's encoders go on serving the other gateways with every stream open: only
        ``also_kill`` is killed and this process leaves the cluster (`scenekv encoders down` stops
        them)."""
        encoders = [] if self.pool.shared else list(self.pool.handles.values())
        refs = [e.shutdown.remote() for e in encoders]
        try:
            if refs:
                ray.get(refs, timeout=max(0.1, left() - STOP_RAY_S))
        except ray.exceptions.GetTimeoutError:
            log.warning("an encoder did not detach its streams in time; killing it")
        except Exception:
            log.exception("encoder shutdown")
        with contextlib.suppress(Exception):
            self.pool.close()  # every stream detached: each is placed afresh when continued
        for actor in [*encoders, *also_kill]:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self._stop_ray_and_redis(left())

    def leave(self) -> None:
        """Disconnect from the cluster and Redis, leaving a shared pool's encoders running
        (`scenekv encoders up`)."""
        self.store.close()
        self._stop_ray_and_redis()

    def _stop_ray_and_redis(self, timeout: float = 10.0) -> None:
        """Stop Ray if this process started it, and the Redis child if there is one."""
        if self._owns_ray:
            ray.shutdown()
        if self._redis_child is not None:
            self._redis_child.stop(timeout=timeout)


class ForeignEncoders(UserError):
    """Encoders found by name that another pool started (another deployment's, or a lost record's)."""


STOP_RAY_S = 1.0  # kept for stopping Ray and a private Redis: 0.8 s measured on a 2-core VM


def start_ray(address: str | None, num_cpus: int | None, worker_logs: bool) -> None:
    """Join the cluster at ``address``, or start a local Ray on loopback with a small object store."""
    if address:
        ray.init(address=address, namespace=NAMESPACE, logging_level="ERROR", log_to_driver=worker_logs)
    else:
        ray.init(
            namespace=NAMESPACE,
            num_cpus=num_cpus or os.cpu_count() or 2,
            include_dashboard=False,
            object_store_memory=512 * 2**20,
            _node_ip_address="127.0.0.1",
            logging_level="ERROR",
            log_to_driver=worker_logs,
        )


def _described(pool: EncoderPool, model: str, timeout: float) -> dict:
    """The first encoder's ``describe_model``, once every encoder loaded. The first load error is
    raised as soon as it comes, not after the others' wait."""
    refs = [e.describe_model.remote() for e in pool.handles.values()]
    deadline, pending = time.monotonic() + timeout, list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            raise UserError(
                f"the encoders did not load {model} within {timeout:g} s: the cluster may lack "
                "the CPUs or GPUs they ask for (`ray status`), or the checkpoint is slow to read"
            )
        ray.get(ready[0])  # an encoder's load error is raised here, at once
    described = ray.get(refs)
    strangers = [n for n, d in zip(pool.handles, described, strict=True) if d.get("pool_id") != pool.pool_id]
    if strangers:
        raise ForeignEncoders(
            f"the Ray actors {', '.join(strangers)} of namespace {pool_namespace(pool.prefix)!r} belong "
            "to another pool: another deployment with the same key prefix (give this one its own "
            "--prefix), or this deployment's Redis lost its record (`scenekv encoders down` stops them)"
        )
    return described[0]
