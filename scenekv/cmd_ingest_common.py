"""What `scenekv ask` and `scenekv caption` share: service flags and "ingest once, reuse after"."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from scenekv.cmd_inspect import add_model_arguments
from scenekv.defaults import DEFAULT_CARRIERS

KV_DTYPE_CHOICES = ("int8", "int4", "bf16", "fp16", "fp32", "exact")  # memory/quant.py KV_DTYPES


def add_storage_arguments(p: argparse.ArgumentParser) -> None:
    """How stream memory is kept in Redis (ask, caption and serve share these)."""
    p.add_argument(
        "--kv-dtype",
        default="int8",
        choices=KV_DTYPE_CHOICES,
        help="how chunks' KV is stored in Redis: int8 (default; keys per channel, values per token), "
        "int4, bf16, fp16, fp32, or exact (the model's own tensors, bit for bit)",
    )


def _positive_seconds(text: str) -> float:
    """A duration as ``parse_duration`` reads it (``900``, ``15m``), more than zero."""
    from scenekv.errors import UserError
    from scenekv.units import parse_duration

    try:
        value = parse_duration(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {text}")
    return value


def add_load_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--load-timeout",
        type=_positive_seconds,
        default=900.0,
        help="how long the encoders get to load the model before startup fails (seconds or 15m; default 900)",
    )


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_storage_arguments(p)
    add_load_timeout(p)
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument(
        "--carriers", default=DEFAULT_CARRIERS, help=f"carrier strategy (default {DEFAULT_CARRIERS})"
    )
    p.add_argument("--redis-url", default=None, help="default: REDIS_URL, 127.0.0.1:6379, else a local child")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster (default: local Ray)")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="also show transformers' and Ray's warnings and the actors' output (default: in Ray's logs)",
    )


def service_from_args(args: argparse.Namespace, *, captions: bool = True):
    """A SceneKVService from the common flags (local Ray, Redis found or started, model loaded)."""
    from scenekv.workers.service import SceneKVService

    quiet = getattr(args, "verbose", None) is False  # ask / caption; serve keeps every log line
    if quiet:
        quiet_dependencies()
    return SceneKVService(
        worker_logs=not quiet,
        model=args.model,
        redis_url=args.redis_url,
        ray_address=args.ray_address,
        device=args.device,
        dtype=args.dtype,
        captions=captions,
        rolling={"kv_dtype": args.kv_dtype},
        live_retention=live_retention(args),
        encoders=getattr(args, "encoders", None),
        load_timeout=args.load_timeout,
    )


def live_retention(args: argparse.Namespace) -> dict | None:
    """serve's --keep-full / --keep-compact / --max-stream-bytes as Retention fields (None elsewhere)."""
    from scenekv.units import parse_duration, parse_size

    if not hasattr(args, "keep_full"):
        return None
    cap = getattr(args, "max_stream_bytes", None)
    return {
        "keep_s": parse_duration(args.keep_full),
        "max_s": parse_duration(args.keep_compact),
        "max_bytes": parse_size(cap) if cap is not None else None,
    }


def quiet_dependencies() -> None:
    """The terminal shows SceneKV's lines: dependencies' warnings (transformers' deprecations, torch,
    Ray) are silenced in this process; SceneKV's own warnings (e.g. damaged media) still show."""
    import logging
    import warnings

    for module in ("transformers", "torch", "ray", "huggingface_hub", "accelerate"):
        warnings.filterwarnings("ignore", module=rf"{module}(\.|$)")
    for name in ("transformers", "ray", "torch", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)


def warn_if_random(service) -> None:
    """Say once, on stderr, when the model's answers are placeholders or world-only."""
    from scenekv.cmd_inspect import print_model_banner

    m = service.model
    print_model_banner(m["model"], random=m["random_weights"], world_only=m.get("world_only", False))


def stream_id_for(source: str, model: str, fps: float, carriers: str) -> str:
    """A stable id per (file content identity, model, fps, carriers): re-running reuses the memory."""
    path = Path(source)
    if path.is_file():
        st = path.stat()
        ident = f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"
    else:
        ident = source
    digest = hashlib.sha1(f"{ident}|{model}|{fps:g}|{carriers}".encode()).hexdigest()[:16]
    return f"file-{digest}" if path.is_file() else f"url-{digest}"


def ingest_file(
    service, source: str, *, fps: float, carriers: str, on_progress=None, parts: int | None = None
) -> tuple[str, bool]:
    """Encode ``source`` into memory unless an earlier run already did; returns (sid, reused).

    Long files are split into time ranges decoded in parallel (one per ~minute, at most ``parts``,
    default: the CPU count); a run that was interrupted continues after its last stored frame.
    """
    from scenekv.errors import UserError

    if not Path(source).is_file():
        if "://" not in source:
            raise UserError(f"no such file: {source}", code="not_found")
        raise UserError("ask/caption take video files; for live URLs use `scenekv serve`", code="bad_request")
    sid = stream_id_for(os.path.abspath(source), service.model["model"], fps, carriers)
    if service.store.exists(sid) and service.store.info(sid).status == "ended":
        return sid, True
    duration = media_duration(source)
    if duration is None:
        raise UserError(
            f"{source}: the file declares no duration; cannot split it into ranges", code="bad_media"
        )
    n = parts or max(1, min(os.cpu_count() or 1, int(duration // 60)))
    try:
        info = service.start_stream(
            source, fps=fps, carriers=carriers, sid=sid, decode=False
        )  # ranges feed it
        _ingest(service, source, sid, info, duration, fps, n, on_progress)
    except Exception as exc:
        raise store_refused(service, source, sid, duration, exc) or exc from None
    return sid, False


def store_refused(service, source: str, sid: str, duration: float, exc: BaseException):
    """A UserError saying what Redis kept when it refused writes (full, read-only), else None."""
    from scenekv.errors import UserError, unwrap
    from scenekv.failures import first_line, redis_full

    cause = unwrap(exc)
    text = f"{cause} {getattr(cause, '__cause__', '') or ''}"
    full = redis_full(text)
    if getattr(cause, "code", None) not in ("memory_write_failed", "memory_backpressure") and not (
        type(cause).__module__.startswith("redis") and full
    ):
        return None
    name = os.path.basename(source)
    try:
        info = service.store.info(sid) if service.store.exists(sid) else None
        if info is not None and info.chunks:
            kept = (
                f"{info.chunks} chunks up to {info.last_pts or 0:.0f} s of {name} ({duration:.0f} s) are "
                "stored, the rest is not"
            )
        else:  # not even the first chunk (or the stream itself) could be written
            kept = f"nothing of {name} ({duration:.0f} s) could be stored"
    except Exception:
        kept = f"what is stored of {name} could not be checked"
    if full:
        why = "Redis is full"
    elif getattr(cause, "code", None) == "memory_backpressure":
        why = f"Redis is too slow to take the writes ({first_line(str(cause))})"
    else:
        why = f"Redis refused the writes ({first_line(str(cause))})"
    fix = "free memory or raise maxmemory" if full else "fix Redis"
    return UserError(
        f"{why}: {kept}; {fix} and run the same command again to resume",
        code="store_full" if full else "memory_write_failed",
    )


def _ingest(service, source, sid, info, duration, fps, n, on_progress) -> None:
    service.ingest_ranges(
        source, sid, duration=duration, fps=fps, parts=n, after=info["last_pts"], on_batch=on_progress
    )
    service.end_stream(sid)


def media_duration(path: str) -> float | None:
    import av

    try:
        with av.open(path) as container:
            return container.duration / 1e6 if container.duration else None
    except (av.FFmpegError, OSError):
        return None
