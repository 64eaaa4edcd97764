"""`when` from the content index against the scene scan it replaces, on world videos.

    scenekv make-world /tmp/w101.mp4 --seed 101 --duration 600 --fps 5
    python bench/when_index.py /tmp/w101.mp4 [more.mp4 ...] [--json out.json]

Each video (with its ground-truth sidecar) is ingested once through ``StreamHub`` in this process
(the world model, fp32; frames at 1 fps in batches of 8 with one background step after each, as the
encoder's scheduler runs; no captions, so the background work is the readings alone), and the
stream's end makes the readings still due. Then every `when` question SceneKV-Bench asks of it
(bench/qa.py: each object and background appearing 1-8 times, and two objects that never appear) is
answered twice on the same stored memory: from the index (the default path), and by the scene scan
(the path before the index: the index's keys are dropped first, so the engine falls back to it).
Graded strict (every appearance +-2 s, nothing else). Reported per video: accuracy, median and
worst TTFT (the engine's own figure, in this process: no Ray hop), model reads per question, the
wall time of ingest spent in appends and in reading steps (which the scheduler interleaves), the
index's bytes per frame (Redis's MEMORY USAGE) beside the KV's, and, from the same readings without
the smoothing (qa/appearances.py), raw runs (two frames, at most one other between). ``--neutral N``
also reads the first N frames with four canonical questions of each kind: does a reading depend on
the colour / shape the question names? ``--threads 1`` on a shared 2-core machine: torch's two
threads spin-wait when another process holds a core (a forward of the world model went from 3 ms to
140 ms under load), one thread does not.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import torch

from scenekv.ingest import open_source
from scenekv.memory import MemoryStore
from scenekv.memory.content_index import OBJECT, label_words
from scenekv.qa.when_index import asked_kind, named_labels
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.grading import times_in
from scenekv.world.truth import load_truth

sys.path.insert(0, str(Path(__file__).parent))
from qa import same_times, when_questions  # noqa: E402  (bench/qa.py: the same questions and grading)


def ingest(hub: StreamHub, path: str) -> tuple[str, dict]:
    """The video into a new stream; seconds spent appending and reading, frames."""
    spent = {"append_s": 0.0, "read_s": 0.0, "frames": 0}
    step = hub.readings_due.step

    def timed_step(sid=None):
        t = time.perf_counter()
        try:
            return step(sid)
        finally:
            spent["read_s"] += time.perf_counter() - t

    hub.readings_due.step = timed_step
    sid = hub.open(source=path)["stream_id"]
    with open_source(path, fps=1.0) as src:
        batch = []
        for frame in src:
            batch.append((frame.pts, frame.image))
            if len(batch) == 8:
                t = time.perf_counter()
                hub.append(sid, batch)
                spent["append_s"] += time.perf_counter() - t
                spent["frames"] += len(batch)
                batch = []
                hub.background_step()
        if batch:
            hub.append(sid, batch)
            spent["frames"] += len(batch)
    hub.end(sid)  # the readings still due are made here (timed_step)
    return sid, spent


VARIANTS = {
    "object": [
        f"When did the {o} appear?" for o in ("red circle", "blue square", "green triangle", "white circle")
    ],
    "background": [f"When was the background {c}?" for c in ("red", "blue", "green", "white")],
}


def neutrality(hub: StreamHub, sid: str, truth, frames: int) -> dict:
    """Whether a frame's reading depends on which colour / shape the canonical question names: the
    first ``frames`` stored frames read with four questions of each kind; agreement with the first
    question, and accuracy on frames >= 1 s from a scene boundary."""
    store, answerer = hub.store, hub.engine.answerer
    chunks = store.load_chunks(sid, store.chunk_ids(sid))
    singles = [f for c in chunks for f in c.split_frames()][:frames]
    bounds = [s.start for s in truth.scenes[1:]]
    clear = [all(abs(f.first_pts - b) > 1.0 for b in bounds) for f in singles]
    out = {}
    for kind, asked in VARIANTS.items():
        reads = [[answerer.read(answerer.check_ids(q), [f]) for f in singles] for q in asked]
        want = [
            truth.scene_at(f.first_pts).object_name
            if kind == "object"
            else truth.scene_at(f.first_pts).background
            for f in singles
        ]
        out[kind] = {
            "agreement": [
                round(sum(a == b for a, b in zip(r, reads[0], strict=True)) / len(r), 3) for r in reads
            ],
            "accuracy": [
                round(
                    sum(a == w for a, w, c in zip(r, want, clear, strict=True) if c) / max(1, sum(clear)), 3
                )
                for r in reads
            ],
        }
    return out


def raw_runs(hub: StreamHub, sid: str, asked, gap: int = 1, least: int = 2) -> dict:
    """The same readings answered without the smoothing: a run of frames read as the thing (at most
    ``gap`` frames read otherwise between two of them) of at least ``least`` frames is an appearance."""
    readings = hub.store.readings(sid)
    labels = hub.store.index_labels(sid)
    right = 0
    for question, starts in asked:
        kind = asked_kind(question)
        shown = {label_words(x) for x in named_labels(question, labels)}
        hits = [i for i, r in enumerate(readings) if (r.object if kind == OBJECT else r.background) in shown]
        runs: list[list[int]] = []
        for i in hits:
            if runs and i - runs[-1][-1] <= 1 + gap:
                runs[-1].append(i)
            else:
                runs.append([i])
        onsets = [int(readings[r[0]].pts) for r in runs if len(r) >= least]
        right += same_times(onsets, starts) if starts else not onsets
    return {"right": right, "asked": len(asked)}


def questions(truth) -> list[tuple[str, list[float]]]:
    asked = when_questions(truth)
    names = {s.object_name for s in truth.scenes}
    absent = [f"{c} {o}" for c in ("white", "black", "red", "blue") for o in ("square", "circle", "triangle")]
    return asked + [(f"When did the {a} appear?", []) for a in absent if a not in names][:2]


@contextlib.contextmanager
def counted_reads(answerer) -> Iterator[list[int]]:
    """Count the model reads (``answerer.read`` calls) made inside the block: ``reads[0]``."""
    read, reads = answerer.read, [0]

    def counted(*args, **kwargs):
        reads[0] += 1
        return read(*args, **kwargs)

    answerer.read = counted
    try:
        yield reads
    finally:
        answerer.read = read


def grade(hub: StreamHub, sid: str, asked) -> dict:
    right, ttft, per_question, wrong = [], [], [], []
    with counted_reads(hub.engine.answerer) as reads:
        for question, starts in asked:
            reads[0] = 0
            answer = hub.ask(sid, question)
            list(answer)
            ok = same_times(times_in(answer.text), starts) if starts else answer.text.strip() == "never"
            right.append(ok)
            ttft.append(answer.ttft_ms)
            per_question.append(reads[0])
            if not ok:
                wrong.append({"question": question, "want": starts, "got": answer.text})
    return {
        "right": sum(right),
        "asked": len(right),
        "ttft_ms_median": round(statistics.median(ttft), 1),
        "ttft_ms_max": round(max(ttft), 1),
        "reads_per_question_max": max(per_question),
        "wrong": wrong,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument(
        "--neutral", type=int, default=0, help="also read this many frames with 4 questions of each kind"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (on a shared machine 1 avoids spin-waits)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend("scenekv-world")
    rows = []
    for path in args.videos:
        truth = load_truth(path)
        store = MemoryStore(prefix=f"bench:{uuid.uuid4().hex[:8]}:", ttl_s=3600)
        hub = StreamHub(backend, store, captions=False)
        try:
            sid, spent = ingest(hub, path)
            usage, kv_bytes = store.index_usage(sid), store.info(sid).bytes
            neutral = neutrality(hub, sid, truth, args.neutral) if args.neutral else None
            asked = questions(truth)
            index = grade(hub, sid, asked)
            runs = raw_runs(hub, sid, asked)
            store.trim_index(sid, float("inf"))  # as recorded before the index: the scene scan answers
            scan = grade(hub, sid, asked)
        finally:
            store.delete_stream(sid)
        row = {
            "video": path,
            "minutes": round(truth.duration / 60, 1),
            "scenes": len(truth.scenes),
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in spent.items()},
            "read_s_per_hour": round(spent["read_s"] * 3600 / truth.duration, 0),
            "append_s_per_hour": round(spent["append_s"] * 3600 / truth.duration, 0),
            "index_bytes_per_frame": round(usage.bytes / max(1, spent["frames"]), 1),
            "kv_bytes_per_frame": round(kv_bytes / max(1, spent["frames"]), 1),
            "index": index,
            "raw_runs": runs,
            "scan": scan,
            "neutrality": neutral,
        }
        rows.append(row)
        print(
            f"{Path(path).name}: {row['minutes']} min, {row['scenes']} scenes; when index "
            f"{index['right']}/{index['asked']} (TTFT median {index['ttft_ms_median']} ms, max "
            f"{index['ttft_ms_max']} ms, reads <= {index['reads_per_question_max']}; raw runs "
            f"{runs['right']}/{runs['asked']}), scan "
            f"{scan['right']}/{scan['asked']} (TTFT median {scan['ttft_ms_median']} ms, max "
            f"{scan['ttft_ms_max']} ms, reads <= {scan['reads_per_question_max']}); ingest "
            f"{spent['frames']} frames: appends {spent['append_s']:.0f} s, readings {spent['read_s']:.0f} s",
            flush=True,
        )
    meta = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
