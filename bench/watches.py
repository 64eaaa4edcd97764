"""Watches on pushed world streams: recall, precision and latency of ``watch.hit`` against the truth.

    scenekv make-world /tmp/bench/w101.mp4 --seed 101 --duration 600 --fps 5
    python bench/watches.py /tmp/bench/w10{1,2,3,4,5}.mp4 --threads 1 --json out.json
    python bench/watches.py --replay out.json --confirm 3      # other detector settings, same readings

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
from dataclasses import dataclass
from pathlib import Path

import torch

from scenekv.ingest import open_source
from scenekv.memory import MemoryStore, Reading
from scenekv.memory.watches import new_watch
from scenekv.qa.watch_detector import Started, WatchDetector, WatchMatcher, WatchParams
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.truth import load_truth

sys.path.insert(0, str(Path(__file__).parent))
from qa import appearance_runs  # noqa: E402  (bench/qa.py: the same appearances)

TOLERANCE_S = 2.0


def appearances(truth) -> dict[str, list[float]]:
    """Watch text -> the starts of its truth appearances (bench/qa.py's appearance_runs)."""
    runs = appearance_runs(truth)
    return {
        (k if kind == "object" else f"{k} background"): [a for a, _ in v] for (kind, k), v in runs.items()
    }


@dataclass(frozen=True)
class Told:
    text: str
    start: float
    end: float | None
    told: float  # pts of the frame whose reading told it


def grade(wanted: dict[str, list[float]], told: list[Told], frame_times: list[float]) -> dict:
    """Recall, precision and latency in frames of ``told`` against the truth's appearances."""
    right, latency, misses, false = 0, [], [], []
    for text, truth_starts in wanted.items():
        starts = list(truth_starts)
        for h in sorted((h for h in told if h.text == text), key=lambda h: h.start):
            match = next((s for s in starts if abs(h.start - s) <= TOLERANCE_S), None)
            if match is None:
                false.append({"text": text, "start": h.start, "end": h.end})
                continue
            starts.remove(match)
            right += 1
            first = min((t for t in frame_times if t >= match - 1e-6), default=match)  # first showing it
            latency.append(round(h.told - first, 3))
        misses += [{"text": text, "start": s} for s in starts]
    total = sum(len(v) for v in wanted.values())
    return {
        "appearances": total,
        "hits": len(told),
        "right": right,
        "recall": round(right / max(1, total), 3),
        "precision": round(right / max(1, len(told)), 3),
        "latency_frames_median": statistics.median(latency) if latency else None,
        "latency_frames_max": max(latency) if latency else None,
        "misses": misses,
        "false": false,
    }


def run_video(hub: StreamHub, path: str) -> dict:
    wanted = appearances(load_truth(path))
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
    with open_source(path, fps=1.0) as src:
        for frame in src:
            pushed_at[frame.pts] = time.perf_counter()
            hub.append(sid, [(frame.pts, frame.image)])
            while hub.background_due():  # the scheduler's idle time before the next frame
                if hub.background_step() is None:
                    break
    hub.end(sid)
    runner._store = record
    told, wall = [], []
    for h in store.watch_hits(sid):
        frame, t_hit = told_at.get((h.watch_id, h.start), (h.start, None))
        told.append(Told(ids[h.watch_id], h.start, h.end, frame))
        if t_hit is not None and frame in pushed_at:
            wall.append(t_hit - pushed_at[frame])
    readings = [[r.pts, r.object, r.background] for r in store.readings(sid)]
    store.delete_stream(sid)
    row = {"video": str(Path(path).resolve()), "frames": len(pushed_at), "watches": len(ids)}
    row |= grade(wanted, told, sorted(pushed_at))
    row["latency_wall_ms_median"] = round(1000 * statistics.median(wall), 1) if wall else None
    row["readings"] = readings  # what --replay evaluates other detector settings on
    return row


def replay(row: dict, params: WatchParams) -> dict:
    """The same readings through detectors with ``params`` (no model pass): what a watch would tell."""
    wanted = appearances(load_truth(row["video"]))
    readings = [Reading(float(p), o, b) for p, o, b in row["readings"]]
    step = readings[1].pts - readings[0].pts if len(readings) > 1 else 1.0
    told = []
    for text in wanted:
        matcher, detector = WatchMatcher.of(text), WatchDetector(params)
        opened: dict[float, float] = {}
        changes = [(r.pts, c) for r in readings for c in detector.process(r.pts, matcher.reading(r))]
        changes += [(readings[-1].pts, c) for c in detector.finish(step)]
        for pts, change in changes:
            if isinstance(change, Started):
                opened[change.start] = pts
            else:
                told.append(Told(text, change.start, change.end, opened.get(change.start, change.start)))
    out = {"video": Path(row["video"]).name, "frames": len(readings), "watches": len(wanted)}
    return out | grade(wanted, told, [r.pts for r in readings])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="*")
    p.add_argument("--json", default=None, help="write the results (and each video's readings) here too")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a shared machine)")
    p.add_argument("--replay", default=None, help="a --json output: grade its readings with other settings")
    p.add_argument("--confirm", type=int, default=WatchParams.confirm, help="with --replay")
    p.add_argument("--end-after", type=int, default=WatchParams.end_after, help="with --replay")
    args = p.parse_args()
    if args.replay:
        params = WatchParams(confirm=args.confirm, end_after=args.end_after)
        rows = [replay(r, params) for r in json.loads(Path(args.replay).read_text())["videos"]]
    else:
        rows = measure(args.videos, args.threads)
    for row in rows:
        print(
            json.dumps({k: v for k, v in row.items() if k not in ("misses", "false", "readings")}), flush=True
        )
    right = sum(r["right"] for r in rows)
    total = {
        "appearances": sum(r["appearances"] for r in rows),
        "hits": sum(r["hits"] for r in rows),
        "right": right,
        "recall": round(right / max(1, sum(r["appearances"] for r in rows)), 3),
        "precision": round(right / max(1, sum(r["hits"] for r in rows)), 3),
        "latency_frames_median": statistics.median(r["latency_frames_median"] for r in rows),
        "machine": f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
    }
    print(json.dumps(total))
    if args.json:
        Path(args.json).write_text(json.dumps({"videos": rows, "total": total}))
    return 0


def measure(videos: list[str], threads: int | None) -> list[dict]:
    if threads:
        torch.set_num_threads(threads)
    backend = load_backend("scenekv-world")
    store = MemoryStore(prefix=f"benchwatch-{uuid.uuid4().hex[:8]}:")
    hub = StreamHub(backend, store, captions=False)
    try:
        return [run_video(hub, path) for path in videos]
    finally:
        hub.close()


if __name__ == "__main__":
    sys.exit(main())
