"""`scenekv inspect`: what a carrier strategy costs on a real source, before serving it."""

from __future__ import annotations

import argparse

from scenekv.defaults import AUTO_MODEL, DEFAULT_CHECKPOINT, TINY_MODEL, VISION_MAX_SIDE, WORLD_MODEL

HELP = "encode a source with a model and carrier strategy; print carriers and KV per frame"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file or live URL")
    add_model_arguments(p)
    p.add_argument("--carriers", default="native", help="NAME[:K][+dedup:TAU], e.g. pool:16+dedup:0.95")
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N sampled frames")
    p.add_argument("--batch", type=int, default=8, help="frames per vision forward (default 8)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=AUTO_MODEL,
        help=f"hub id, local path, {WORLD_MODEL}, {TINY_MODEL}, or auto (default: {DEFAULT_CHECKPOINT} "
        f"when cached or the hub answers, else {WORLD_MODEL}, the model trained on SceneKV's world)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if present)")
    p.add_argument(
        "--dtype",
        default=None,
        help="bf16, fp16 or fp32 (default: bf16 on CUDA and bf16-capable CPUs, else fp32)",
    )


def model_banner(model_id: str, *, random: bool, world_only: bool = False) -> str | None:
    """What the user must know about the model's answers before trusting them (None: nothing)."""
    if random:
        return (
            f"*** {model_id}: RANDOM WEIGHTS — the architecture is real, the answers are placeholders. "
            "Pass --model with a checkpoint (hub id or local path) for real answers. ***"
        )
    if world_only:
        return (
            f"*** {model_id}: trained only on SceneKV's synthetic world: it knows these colours and shapes "
            "and nothing else. Pass --model with a real checkpoint (hub id or local path) for real video. ***"
        )
    return None


def print_model_banner(model_id: str, *, random: bool, world_only: bool = False) -> None:
    """The model banner on stderr, once, where there is one."""
    import sys

    banner = model_banner(model_id, random=random, world_only=world_only)
    if banner:
        print(banner, file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    import json
    import time

    from scenekv.errors import UserError
    from scenekv.ingest import open_source
    from scenekv.vlm import CarrierSpec, StreamSession, load_backend

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    spec = CarrierSpec.parse(args.carriers)
    # Opened first: bad input fails before the model loads.
    with open_source(args.source, fps=args.fps, max_side=VISION_MAX_SIDE) as source:
        backend = load_backend(args.model, device=args.device, dtype=args.dtype)
        print_model_banner(backend.model_id, random=backend.is_random, world_only=backend.world_only)
        session = StreamSession(backend, spec)
        geo = backend.geometry
        if not args.json:
            print(f"model {backend.model_id}  carriers {spec}  {geo.bytes_per_token} bytes of KV per token")
            print(f"{'index':>6} {'pts':>10} {'carriers':>9} {'kv_tokens':>10}")
        encode_s, batch = 0.0, []

        def flush() -> None:
            nonlocal encode_s
            start = time.perf_counter()
            records = session.append([(f.pts, f.image) for f in batch])
            encode_s += time.perf_counter() - start
            batch.clear()
            for r in records:
                row = {
                    "index": r.index,
                    "pts": round(r.pts, 6),
                    "carriers": r.carriers,
                    "kv_tokens": r.kv_tokens,
                }
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(f"{r.index:>6} {r.pts:>10.3f} {r.carriers:>9} {r.kv_tokens:>10}", flush=True)

        for frame in source:
            batch.append(frame)
            if len(batch) >= args.batch:
                flush()
            if args.max_frames is not None and len(session.frames) + len(batch) >= args.max_frames:
                break
        if batch:
            flush()
    kv_tokens = sum(r.kv_tokens for r in session.frames)
    summary = {
        "frames": len(session.frames),
        "kv_tokens": kv_tokens,
        "kv_bytes": kv_tokens * geo.bytes_per_token,
        "encode_s": round(encode_s, 3),
        "frames_per_s": round(len(session.frames) / encode_s, 3) if encode_s else 0.0,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k}={v}" for k, v in summary.items()))
    return 0
