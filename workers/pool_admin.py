"""`scenekv encoders up | down | status`: a deployment's shared encoder pool, managed on its own.

``up`` starts the pool (or finds it) and leaves it running; ``status`` reads its record and asks each
encoder for its stats; ``down`` detaches every stream (written to Redis; each resumes on its next
attach, on whatever pool runs then) and stops the encoders. All three need a Ray cluster: a local
Ray would end with the command.
"""

from __future__ import annotations

import os

from scenekv.errors import UserError
from scenekv.memory.local_redis import answers
from scenekv.memory.redis_conn import connect, redis_url_default

from .encoder_pool import EncoderPool, pool_namespace
from .pool_record import PoolRecord
from .runtime import Runtime, start_ray
from .stream_caps import StreamSlots


def cluster_address(ray_address: str | None) -> str:
    address = ray_address or os.environ.get("RAY_ADDRESS")
    if not address:
        raise UserError(
            "the encoders of a deployment live on a Ray cluster: give --ray-address or RAY_ADDRESS "
            "(without one, `scenekv serve` runs encoders of its own)"
        )
    return address


def _redis(redis_url: str | None) -> str:
    url = redis_url or redis_url_default()
    if not answers(url):
        raise UserError(f"no Redis answers at {url}: the pool is recorded in the deployment's Redis")
    return url


def up(*, redis_url: str | None, ray_address: str | None, prefix: str, **encoder_options) -> dict:
    """Start the pool unless it runs; wait until every encoder loaded the model. Its status."""
    address, url = cluster_address(ray_address), _redis(redis_url)
    runtime = Runtime(
        redis_url=url, ray_address=address, prefix=prefix, num_cpus=None, worker_logs=False, **encoder_options
    )
    try:
        return _status(runtime.pool) | {"model": runtime.model}
    finally:
        runtime.leave()


def status(*, redis_url: str | None, ray_address: str | None, prefix: str) -> dict | None:
    """The pool's record and each encoder's stats; None when no pool is recorded."""
    address, url = cluster_address(ray_address), _redis(redis_url)
    start_ray(address, None, worker_logs=False)
    try:
        pool = EncoderPool.find(url, prefix)
        return _status(pool) if pool is not None else None
    finally:
        _leave_ray()


def down(
    *, redis_url: str | None, ray_address: str | None, prefix: str, timeout: float = 120.0
) -> dict | None:
    """Detach every stream and stop the pool's encoders; what was stopped (None: no pool)."""
    address, url = cluster_address(ray_address), _redis(redis_url)
    start_ray(address, None, worker_logs=False)
    try:
        pool = EncoderPool.find(url, prefix)
        if pool is None:  # none left on the cluster: a record naming them goes too
            record = PoolRecord(connect(url), prefix)
            held = record.read()
            if held is not None:
                record.drop(held["id"])
            return None
        stopped = _status(pool)
        pool.stop(timeout)
        if pool.pool_id:  # without a record the encoders' places expire by themselves
            StreamSlots(connect(url), prefix, pool.pool_id).clear()
        return stopped
    finally:
        _leave_ray()


def _status(pool: EncoderPool) -> dict:
    record = pool.record() or {}
    return {
        "pool_id": pool.pool_id,
        "namespace": pool_namespace(pool.prefix),
        **{field: record.get(field) for field in ("model", "started", "by")},
        "encoders": pool.stats(timeout=10.0),
        "missing": [n for n in record.get("names", []) if n not in pool.handles],
    }


def _leave_ray() -> None:
    import ray

    ray.shutdown()
