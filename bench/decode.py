"""Decode benchmark: sample 1 fps from a long 720p H.264 file with every ingest method and the ffmpeg CLI.

    python bench/decode.py                      # 20-minute files, 3 repeats, prints a markdown table
    python bench/decode.py --minutes 1 --repeats 1   # quick smoke run

The test files are generated once with scenekv.world.cut_video.make_video (x264 veryfast: B-frames,
CABAC, like typical H.264 files) into ~/.cache/scenekv/bench (or $SCENEKV_BENCH_DIR) and reused: a
long-GOP file (keyframe every 10 s) and a short-GOP file (every 0.48 s). The reference is
``ffmpeg -i f.mp4 -vf fps=1 -f rawvideo -pix_fmt rgb24 -`` read through a pipe, frames counted.
Every run of a method is a fresh process-free call in this process; the file is in the page cache
after the first run, so all methods read from memory.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scenekv.ingest import open_source
from scenekv.world.cut_video import make_video

FPS_IN = 25
SIZE = (1280, 720)


def cache_dir() -> Path:
    return Path(os.environ.get("SCENEKV_BENCH_DIR", Path.home() / ".cache" / "scenekv" / "bench"))


def bench_file(minutes: float, gop: int) -> Path:
    path = cache_dir() / f"decode-720p{FPS_IN}-{minutes:g}min-gop{gop}-veryfast.mp4"
    if not path.exists():
        tmp = path.with_suffix(".part.mp4")
        print(f"generating {path} (one-off, a few minutes) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        duration = minutes * 60
        cuts = [t for t in range(45, int(duration), 45)]  # a scene change every 45 s
        make_video(tmp, duration=duration, fps=FPS_IN, size=SIZE, gop=gop, cuts=cuts, preset="veryfast")
        tmp.rename(path)
        print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return path


def run_ffmpeg(path: Path, fps: float) -> tuple[int, float]:
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-nostdin",
        "-i",
        str(path),
        "-vf",
        f"fps={fps:g}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]
    frame_bytes = SIZE[0] * SIZE[1] * 3
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    total = 0
    while chunk := proc.stdout.read(1 << 20):
        total += len(chunk)
    proc.wait()
    elapsed = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"ffmpeg failed with exit code {proc.returncode}")
    return total // frame_bytes, elapsed


def run_method(path: Path, fps: float, method: str) -> tuple[int, float, str]:
    started = time.perf_counter()
    with open_source(path, fps=fps, method=method) as src:
        frames = sum(1 for _ in src)
        used = src.stats.method
    return frames, time.perf_counter() - started, used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--gops", default="250,12", help="comma-separated GOP sizes (frames) to test")
    parser.add_argument("--methods", default="ffmpeg,auto,decode,seek,keyframes,decord")
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args()

    gops = [int(g) for g in args.gops.split(",")]
    files = {gop: bench_file(args.minutes, gop) for gop in gops}
    if args.generate_only:
        return
    methods = args.methods.split(",")
    if "ffmpeg" in methods and not shutil.which("ffmpeg"):
        print("ffmpeg CLI not found; skipping it (apt-get install ffmpeg)", file=sys.stderr)
        methods.remove("ffmpeg")

    rows = []
    for gop, path in files.items():
        times: dict[str, list[float]] = {m: [] for m in methods}
        frames: dict[str, int] = {}
        used: dict[str, str] = {}
        for repeat in range(args.repeats):
            for method in methods:  # interleaved, so slow drift of the machine hits all methods alike
                if method == "ffmpeg":
                    n, t = run_ffmpeg(path, args.fps)
                    used[method] = "ffmpeg CLI"
                else:
                    n, t, used[method] = run_method(path, args.fps, method)
                frames[method] = n
                times[method].append(t)
                print(
                    f"gop {gop} repeat {repeat + 1} {method:9s} {n:5d} frames {t:7.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
        ref = statistics.median(times["ffmpeg"]) if "ffmpeg" in times else None
        for method in methods:
            med = statistics.median(times[method])
            rows.append(
                (
                    gop,
                    method,
                    used[method],
                    frames[method],
                    med,
                    frames[method] / med,
                    args.minutes * 60 / med,
                    ref / med if ref else None,
                )
            )

    print()
    print(
        f"Sampling {args.fps:g} fps from {args.minutes:g}-minute {SIZE[0]}x{SIZE[1]} {FPS_IN} fps H.264 "
        f"(x264 veryfast), median of {args.repeats}; {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.machine()}"
    )
    print()
    print("| GOP | method | frames | wall s (median) | frames/s | x realtime | speed vs ffmpeg |")
    print("|---|---|---|---|---|---|---|")
    for gop, method, used, n, med, fps_out, realtime, ratio in rows:
        name = method if method in ("ffmpeg", used) else f"{method} ({used})"
        gop_text = f"{gop} ({gop / FPS_IN:g} s)"
        ratio_text = f"{ratio:.2f}x" if ratio else "-"
        print(f"| {gop_text} | {name} | {n} | {med:.2f} | {fps_out:.1f} | {realtime:.0f} | {ratio_text} |")


if __name__ == "__main__":
    main()
