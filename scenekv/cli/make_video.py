"""`scenekv make-video`: a synthetic video with hard cuts at known times, to try SceneKV without media."""

from __future__ import annotations

import argparse

HELP = "write a synthetic test video (moving patterns, hard cuts at given times, frame numbers drawn)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output path (.mp4, .mkv, .webm, .avi, .mov)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate (default 25)")
    p.add_argument("--size", default="640x360", metavar="WxH", help="frame size (default 640x360)")
    p.add_argument("--cuts", default="", metavar="T1,T2,...", help="hard-cut times in seconds")


def run(args: argparse.Namespace) -> int:
    from scenekv.errors import UserError
    from scenekv.ingest.sampling import parse_frame_size
    from scenekv.world.cut_video import make_video

    try:
        cuts = tuple(float(t) for t in args.cuts.split(",") if t.strip())
    except ValueError as exc:
        raise UserError(f"--cuts must be comma-separated seconds, got {args.cuts!r}") from exc
    if args.duration <= 0 or args.fps <= 0:
        raise UserError("--duration and --fps must be positive")
    bad = [t for t in cuts if not 0 < t < args.duration]
    if bad:
        raise UserError(f"cut times must lie inside (0, {args.duration:g}) s, got {bad}")
    path = make_video(
        args.out, duration=args.duration, fps=args.fps, size=parse_frame_size(args.size), cuts=cuts
    )
    print(path)
    return 0
