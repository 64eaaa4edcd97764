"""What `scenekv ask` and `scenekv caption` share: service flags and "ingest once, reuse after"."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

from scenekv.cmd_inspect import add_model_arguments


def add_service_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--carriers", default="pool:16", help="carrier strategy (default pool:16)")
    p.add_argument("--redis-url", default=None, help="default: REDIS_URL, 127.0.0.1:6379, else a local child")
    p.add_argument("--ray-address", default=None, help="join a Ray cluster (default: local Ray)")


def service_from_args(args: argparse.Namespace, *, captions: bool = True):
    """A SceneKVService from the common flags (local Ray, Redis found or started, model loaded)."""
    from scenekv.workers.service import SceneKVService

    return SceneKVService(
        model=args.model,
        redis_url=args.redis_url,
        ray_address=args.ray_address,
        device=args.device,
        dtype=args.dtype,
        captions=captions,
    )


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
    info = service.start_stream(source, fps=fps, carriers=carriers, sid=sid, decode=False)  # ranges feed it
    duration = media_duration(source)
    if duration is None:
        raise UserError(
            f"{source}: the file declares no duration; cannot split it into ranges", code="bad_media"
        )
    n = parts or max(1, min(os.cpu_count() or 1, int(duration // 60)))
    service.ingest_ranges(
        source, sid, duration=duration, fps=fps, parts=n, after=info["last_pts"], on_batch=on_progress
    )
    service.end_stream(sid)
    return sid, False


def media_duration(path: str) -> float | None:
    import av

    try:
        with av.open(path) as container:
            return container.duration / 1e6 if container.duration else None
    except (av.FFmpegError, OSError):
        return None
