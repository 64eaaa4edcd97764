"""Watches on pushed world streams: recall, precision and latency of ``watch.hit`` against the truth.

    scenekv make-world /tmp/bench/w101.mp4 --seed 101 --duration 600 --fps 5
    python bench/watches.py /tmp/bench/w10{1,2,3,4,5}.mp4 --threads 1 [--json out.json]

Each video (with its ground-truth sidecar) is pushed into a new stream in this process through
``StreamHub`` as a live client would: one frame an append (1 fps), then the background work the
encoder's scheduler runs while it waits for the next frame (captions off, so that is the frame
readings, and the watches evaluated on them: workers/watch_runner.py). Before the first frame the
stream gets one watch for every object and every background colour that appears in the video
("red square", "purple background"), added as a client's ``watch.add`` would be.

A truth appearance is a run of adjacent scenes showing the thing (as bench/qa.py's `when` grading).
A hit is right when it starts within +-2 s of a truth appearance's start that no other hit took;
recall = right hits / truth appearances, precision = right hits / hits. Latency: from the first
frame showing the thing to the frame whose reading told it (the hit's evidence end), in frames
(1 fps: seconds of stream time), and the wall time from pushing that frame to the hit being
stored (this process: no Ray hop, no gateway).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path

import torch

from scenekv.ingest import open_source
from scenekv.memory import MemoryStore
from scenekv.memory.watches import new_watch
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.truth import load_truth

TOLERANCE_S = 2.0


def appearances(truth) -> dict[str, list[float]]:
    """Watch text -> the starts of its truth appearances (runs of adjacent scenes showing it)."""
    out: dict[str, list[float]] = {}
    kinds = ((lambda s: s.object_name if s.object else None), (lambda s: f"{s.background} background"))
    for key in kinds:
        prev = None
        for s in truth.scenes:
            k = key(s)
            if k is not None and k != prev:
                out.setdefault(k, []).append(s.start)
            prev = k
    return out


def run_video(hub: StreamHub, path: str) -> dict:
    truth = load_truth(path)
    wanted = appearances(truth)
    store = hub.store
    sid = hub.open(source="push")["stream_id"]
    ids = {}
    for i, text in enumerate(sorted(wanted)):
        ids[f"w{i}"] = text
        store.add_watch(sid, new_watch(f"w{i}", text), max_watches=len(wanted))
    pushed_at: dict[float, float] = {}
    told_at: dict[tuple[str, float], tuple[float, float]] = {}  # (watch, start) -> (telling frame, wall)
    runner = hub.watches
    record = runner._store

    def timed_store(s, watch, hit):  # when each new hit is stored (wall clock of this process)
        record(s, watch, hit)
        if hit.end is None:
            told_at.setdefault((watch.id, hit.start), (hit.evidence[0][1], time.perf_counter()))

    runner._store = timed_store
    frames = 0
    with open_source(path, fps=1.0) as src:
        for frame in src:
            pushed_at[frame.pts] = time.perf_counter()
            hub.append(sid, [(frame.pts, frame.image)])
            frames += 1
            while hub.background_due():  # the scheduler's idle time before the next frame
                if hub.background_step() is None:
                    break
    hub.end(sid)
    runner._store = record
    hits = store.watch_hits(sid)
    right, latency_frames, latency_wall, misses, false = 0, [], [], [], []
    truth_count = sum(len(v) for v in wanted.values())
    for wid, text in ids.items():
        starts = list(wanted[text])
        for h in (h for h in hits if h.watch_id == wid):
            match = next((s for s in starts if abs(h.start - s) <= TOLERANCE_S), None)
            if match is None:
                false.append({"text": text, "start": h.start, "end": h.end})
                continue
            starts.remove(match)
            right += 1
            told, t_hit = told_at.get((wid, h.start), (h.start, None))
            first = min((t for t in pushed_at if t >= match - 1e-6), default=match)  # first frame showing it
            latency_frames.append(round(told - first, 3))
            t_push = pushed_at.get(told)
            if t_push is not None and t_hit is not None:
                latency_wall.append(t_hit - t_push)
        misses += [{"text": text, "start": s} for s in starts]
    hub.store.delete_stream(sid)
    return {
        "video": Path(path).name,
        "frames": frames,
        "watches": len(ids),
        "appearances": truth_count,
        "hits": len(hits),
        "right": right,
        "recall": round(right / max(1, truth_count), 3),
        "precision": round(right / max(1, len(hits)), 3),
        "latency_frames_median": statistics.median(latency_frames) if latency_frames else None,
        "latency_frames_max": max(latency_frames) if latency_frames else None,
        "latency_wall_ms_median": round(1000 * statistics.median(latency_wall), 1) if latency_wall else None,
        "misses": misses,
        "false": false,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend("scenekv-world")
    store = MemoryStore(prefix=f"benchwatch-{uuid.uuid4().hex[:8]}:")
    hub = StreamHub(backend, store, captions=False)
    rows = []
    try:
        for path in args.videos:
            row = run_video(hub, path)
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("misses", "false")}), flush=True)
    finally:
        hub.close()
    right = sum(r["right"] for r in rows)
    total = {
        "appearances": sum(r["appearances"] for r in rows),
        "hits": sum(r["hits"] for r in rows),
        "right": right,
        "recall": round(right / max(1, sum(r["appearances"] for r in rows)), 3),
        "precision": round(right / max(1, sum(r["hits"] for r in rows)), 3),
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
    }
    print(json.dumps(total))
    if args.json:
        Path(args.json).write_text(json.dumps({"videos": rows, "total": total}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
