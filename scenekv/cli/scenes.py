"""`scenekv scenes`: SceneTiling boundaries of a video, from the signatures SceneKV already computes and
the decoded frames' colour histograms (the same signal a stream's tiler reads)."""

from __future__ import annotations

import argparse

from scenekv.cli.inspect import add_model_arguments
from scenekv.defaults import VISION_MAX_SIDE

HELP = "split a video into scenes (SceneTiling over frame signatures and colours); print one line per scene"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="video file or live URL")
    add_model_arguments(p)
    p.add_argument("--fps", type=float, default=1.0, help="frames sampled per second (default 1)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after N sampled frames")
    p.add_argument("--batch", type=int, default=8, help="frames per vision forward (default 8)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.add_argument(
        "--offline",
        action="store_true",
        help="global statistics over the whole video (VideoLLaMB's version) instead of the causal tiler",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="boundary at depth > mean + alpha*std (0.5)")
    p.add_argument("--min-scene", type=float, default=2.0, help="minimum scene length in seconds (2)")
    p.add_argument("--lookahead", type=int, default=4, help="frames seen before a boundary is final (4)")
    p.add_argument(
        "--max-similarity",
        type=float,
        default=0.9,
        help="frames more similar than this are never split (0.9)",
    )
    p.add_argument(
        "--model-only",
        action="store_true",
        help="cut on the model's frame features alone, without the frames' colour histograms",
    )


def run(args: argparse.Namespace) -> int:
    import json

    from scenekv.cli.inspect import print_model_banner
    from scenekv.errors import UserError
    from scenekv.ingest import open_source
    from scenekv.memory.image_signal import colour_histogram
    from scenekv.memory.scenetiling import SceneTiler, offline_scenes

    if args.batch < 1:
        raise UserError("--batch must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserError("--max-frames must be >= 1")
    if args.lookahead < 1:
        raise UserError("--lookahead must be >= 1")
    params = {"alpha": args.alpha, "min_scene_s": args.min_scene, "max_similarity": args.max_similarity}
    params["image_signal"] = not args.model_only

    def show(scene) -> None:
        row = scene.as_dict()
        row["start"], row["end"] = round(row["start"], 3), round(row["end"], 3)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{row['scene']:>6} {row['start']:>10.3f} {row['end']:>10.3f} {row['frames']:>7}", flush=True
            )

    # Same frame size as the service decodes, so `scenes` shows the cuts a stream of this file gets.
    with open_source(args.source, fps=args.fps, max_side=VISION_MAX_SIDE) as source:  # bad input fails first
        from scenekv.vlm import load_backend
        from scenekv.vlm.carriers import frame_signatures

        backend = load_backend(args.model, device=args.device, dtype=args.dtype)
        print_model_banner(backend.model_id, random=backend.is_random, world_only=backend.world_only)
        if not args.json:
            mode = "offline" if args.offline else f"causal, look-ahead {args.lookahead}"
            mode += ", model features only" if args.model_only else ", model features + colour"
            print(f"model {backend.model_id}  SceneTiling {mode}  alpha {args.alpha}  min {args.min_scene}s")
            print(f"{'scene':>6} {'start':>10} {'end':>10} {'frames':>7}")
        hists: dict[float, object] = {}  # pts -> colour histogram, the tiler's model-independent signal

        def pictures():
            for frame in source:
                hists[frame.pts] = colour_histogram(frame.image)
                yield frame

        signatures = frame_signatures(pictures(), backend, args.batch, args.max_frames)
        if args.offline:
            pts, sigs = [], []
            for p, s in signatures:
                pts.append(p)
                sigs.append(s)
            for scene in offline_scenes(pts, sigs, images=[hists.pop(p) for p in pts], **params):
                show(scene)
        else:
            tiler = SceneTiler(lookahead=args.lookahead, **params)
            for p, s in signatures:
                for scene in tiler.push(p, s, image=hists.pop(p)):
                    show(scene)
            for scene in tiler.flush():
                show(scene)
    return 0
