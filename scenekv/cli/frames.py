"""``scenekv frames``: sample a source and list its frames, to check a file or stream before serving it.

Imports only argparse at module level (``scenekv --help`` stays instant); PyAV and numpy load in run().
"""

from __future__ import annotations

import argparse
import sys

HELP = (
    "Sample frames from a video file or live URL and print their timestamps "
    "(exit 0: ok, 1: a live source was lost, 2: bad input)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", metavar="SOURCE", help="video file, or rtsp:// rtmp:// http(s):// udp:// URL"
    )
    parser.add_argument(
        "--fps", type=float, default=1.0, help="target frames per second (0: every frame; default 1)"
    )
    parser.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames")
    parser.add_argument("--json", action="store_true", help="one JSON line per frame, then a summary line")
    parser.add_argument(
        "--method",
        default="auto",
        choices=("auto", "decode", "seek", "keyframes", "decord"),
        help="file decode method (default auto; keyframes is fastest but approximate)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--size", metavar="WxH", help="resize every frame to exactly WxH")
    group.add_argument("--max-side", type=int, metavar="N", help="shrink so the longer side is at most N")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="S", help="URL open/read timeout (s)")


def run(args: argparse.Namespace) -> int:
    import json
    import logging
    import warnings

    from scenekv.ingest.errors import InvalidOption, SourceLostWarning
    from scenekv.ingest.sampling import parse_frame_size
    from scenekv.ingest.source import open_source

    if args.fps < 0:
        raise InvalidOption(f"--fps must be positive (or 0 for every frame), got {args.fps:g}")
    if args.max_frames is not None and args.max_frames < 1:
        raise InvalidOption(f"--max-frames must be at least 1, got {args.max_frames}")
    size = parse_frame_size(args.size) if args.size else None
    # Reconnect notices from the live reader thread, in the same one-line style as errors.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("scenekv frames: %(message)s"))
    ingest_log = logging.getLogger("scenekv.ingest")
    ingest_log.addHandler(handler)
    ingest_log.setLevel(logging.WARNING)
    ingest_log.propagate = False

    lost = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = open_source(
            args.source,
            fps=args.fps or None,
            size=size,
            max_side=args.max_side,
            method=args.method,
            timeout=args.timeout,
        )
        if not args.json:
            kind = "live" if source.live else "file"
            print(f"{args.source} ({kind}, method {source.stats.method})")
            print(f"{'index':>7}  {'pts (s)':>10}  size")
        try:
            for frame in source:
                if args.json:
                    line = {
                        "index": frame.index,
                        "pts": frame.pts,
                        "width": frame.width,
                        "height": frame.height,
                    }
                    print(json.dumps(line), flush=True)
                else:
                    print(f"{frame.index:>7}  {frame.pts:>10.3f}  {frame.width}x{frame.height}", flush=True)
                if args.max_frames is not None and source.stats.frames >= args.max_frames:
                    break
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
        finally:
            source.close()
        stats = source.stats
        for w in caught:
            lost = lost or issubclass(w.category, SourceLostWarning)
            print(f"scenekv frames: warning: {w.message}", file=sys.stderr)

    summary = {
        "frames": stats.frames,
        "duration": round(stats.duration, 3),
        "dropped": stats.dropped,
        "bad_packets": stats.bad_packets,
        "decode_s": round(stats.decode_s, 3),
        "method": stats.method,
    }
    if source.live:
        summary["reconnects"] = stats.reconnects
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        extra = f", {stats.reconnects} reconnects" if source.live else ""
        print(
            f"{stats.frames} frames over {stats.duration:.2f} s, {stats.dropped} dropped, "
            f"{stats.bad_packets} bad packets{extra}, decode {stats.decode_s:.2f} s (method {stats.method})"
        )
    return 1 if lost else 0
