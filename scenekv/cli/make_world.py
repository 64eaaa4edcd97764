"""`scenekv make-world`: render a synthetic-world video (coloured shapes) and its ground-truth sidecar."""

from __future__ import annotations

import argparse

HELP = "write a world video (palette backgrounds, circles/squares/triangles) plus VIDEO.json ground truth"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output .mp4 path; the ground truth goes to the same name with .json")
    p.add_argument("--seed", type=int, default=0, help="the world's seed (default 0)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    p.add_argument("--size", default="640x360", metavar="WxH", help="frame size (default 640x360)")


def run(args: argparse.Namespace) -> int:
    from scenekv.errors import UserError
    from scenekv.ingest.sampling import parse_frame_size
    from scenekv.world.render import make_world_video

    if args.duration < 3 or args.fps <= 0:
        raise UserError("--duration must be at least 3 s and --fps positive")
    try:
        truth = make_world_video(
            args.out, seed=args.seed, duration=args.duration, fps=args.fps, size=parse_frame_size(args.size)
        )
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    for s in truth.scenes:
        print(f"{s.start:8.1f} - {s.end:8.1f}  {s.describe()}")
    return 0
