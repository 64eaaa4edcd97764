"""`when` on a long stream: TTFT and model passes per question at 10 minutes, 60 minutes and 6 hours.

    for d in 600 3600 21600; do scenekv make-world /tmp/wl/w101-$d.mp4 --seed 101 --duration $d --fps 1; done
    nice -n 10 python bench/when_long.py /tmp/wl/w101-{600,3600,21600}.mp4 --threads 1 --json out.json

Each video is ingested as bench/when_index.py ingests it (``StreamHub`` in this process, the world
model fp32, frames at 1 fps in batches of 8 with one background step after each, no captions, the
readings still due made at the stream's end); the ingest of a 6-hour video is ~25 min of CPU on one
thread. Rendering at ``--fps 1`` is enough: ingest samples 1 fps. Then, on the stored stream (the
hub's kept retrieval index and LRU, as a question after the stream ended), the same questions at
every length:

- ``whole``: "When did the X appear?" / "When was the background C?" for every object and background
  the video shows (no cap on appearances: at 6 hours a thing appears ~6x as often as at 60 minutes),
  plus two objects it never shows. Graded strict (every appearance +-2 s, nothing else) on every
  appearance the engine found (``plan.evidence_spans``: the text names the first 16 only);
  ``bench`` is the SceneKV-Bench subset (1-8 appearances and the absent ones, bench/qa.py), graded
  on the answer's text as bench/when_index.py grades it. Over every appearance of the whole stream,
  per kind: how many the answers found (+-2 s) and how many they named that are none.
- ``last10``: the same questions asked with ``last=600`` (the last 10 minutes of the stream, the
  flat-cost comparison: what is looked up does not grow with the stream), graded against the truth's
  appearances overlapping the window, each starting no earlier than the window.

Every video is ingested first and kept; then every question is asked ``--repeats`` times (default
3), the videos' questions interleaved one by one, so that a shared machine's load falls on every
length alike. Per question the median TTFT (the engine's own figure, ``Answer.ttft_ms``) and the
median wall time of the whole call (``hub.ask`` to the last delta); reported per length: median and
max over questions, the first question's cold figure, model reads per question (every
``answerer.read``: the index answers with none when it is current), the readings smoothed per
question (the index's cost driver), and which path answered (IndexWhen / SceneScan, the
scene scan). ``--threads 1`` on a shared 2-core machine (see bench/when_index.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import torch

from scenekv.memory import MemoryStore
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.grading import times_in
from scenekv.world.truth import load_truth

sys.path.insert(0, str(Path(__file__).parent))
from when_index import counted_reads, ingest  # noqa: E402  (the same ingest, the same read count)

from qa import WHEN_MAX_APPEARANCES, appearance_runs, same_times  # noqa: E402  (bench/qa.py: the same grading)

WINDOW_S = 600.0
ABSENT = [f"{c} {o}" for c in ("white", "black", "red", "blue") for o in ("square", "circle", "triangle")]


def truth_runs(truth) -> dict[str, list[tuple[float, float]]]:
    """Per question, the thing's appearances (start, end): a run of adjacent scenes showing it is one,
    as SceneKV answers and bench/qa.py grades."""
    runs = {
        (f"When did the {k} appear?" if kind == "object" else f"When was the background {k}?"): v
        for (kind, k), v in appearance_runs(truth).items()
    }
    names = {s.object_name for s in truth.scenes}
    for a in [a for a in ABSENT if a not in names][:2]:
        runs[f"When did the {a} appear?"] = []
    return dict(sorted(runs.items()))


def in_window(runs: list[tuple[float, float]], lo: float, hi: float) -> list[float]:
    """The onsets a windowed answer should give: appearances overlapping [lo, hi], from lo at the earliest."""
    return [max(a, lo) for a, b in runs if b > lo and a <= hi]


def ask(hub: StreamHub, sid: str, question: str, **kwargs) -> dict:
    """``question`` asked once: TTFT, the call's wall time, model reads, readings smoothed, the answer."""
    with counted_reads(hub.engine.answerer) as reads:
        t = time.perf_counter()
        answer = hub.ask(sid, question, **kwargs)
        list(answer)
        call_ms = (time.perf_counter() - t) * 1000
    gen = answer.generation
    return {
        "ttft_ms": answer.ttft_ms,
        "call_ms": call_ms,
        "reads": reads[0],
        "smoothed": sum(len(s) for s in getattr(gen, "readings", [])),
        "path": type(gen).__name__,
        "text": answer.text,
        "found": [a for a, _ in (answer.plan.evidence_spans or [])],
        "window": getattr(gen, "window", None),
    }


@dataclass
class Stream:
    """A video ingested and kept, with its questions: (set, question, spans, ask's kwargs)."""

    path: str
    truth: object
    store: MemoryStore
    hub: StreamHub
    sid: str
    row: dict
    tasks: list[tuple[str, str, list[tuple[float, float]], dict]] = field(default_factory=list)
    got: dict = field(default_factory=dict)  # (set, question) -> asks, in order


def summary(rows: list[dict]) -> dict:
    if not rows:  # at 6 hours nothing appears as rarely as SceneKV-Bench's `when` asks (1-8 times)
        return {"asked": 0, "right": 0, "graded": 0}
    ttft = [statistics.median(r["ttft_ms"]) for r in rows]
    call = [statistics.median(r["call_ms"]) for r in rows]
    graded = [r["right"] for r in rows if r["right"] is not None]
    return {
        "asked": len(rows),
        "right": sum(graded),
        "graded": len(graded),
        "ttft_ms_median": round(statistics.median(ttft), 1),
        "ttft_ms_max": round(max(ttft), 1),
        "call_ms_median": round(statistics.median(call), 1),
        "call_ms_max": round(max(call), 1),
        "reads_per_question_max": max(max(r["reads"]) for r in rows),
        "smoothed_median": statistics.median(max(r["smoothed"]) for r in rows),
        "smoothed_max": max(max(r["smoothed"]) for r in rows),
        "appearances_max": max(r["truth"] for r in rows),
        "paths": sorted({p for r in rows for p in r["path"]}),
    }


def matched(found: list[float], want: list[float], tol: float = 2.0) -> int:
    """How many of the true onsets ``want`` an onset in ``found`` matches (+-``tol`` s, each once)."""
    used: set[int] = set()
    for w in want:
        i = next((i for i, g in enumerate(found) if i not in used and abs(g - w) <= tol), None)
        if i is not None:
            used.add(i)
    return len(used)


def graded(s: Stream) -> dict:
    """Per set, each question's asks folded into one row and graded on the last answer."""
    now = s.store.read_through(s.sid)
    sets: dict[str, list[dict]] = {"whole": [], "bench": [], "last10": []}
    # every appearance of the whole stream, per kind: how many the answers found, and how many more
    counts = {k: {"appearances": 0, "found": 0, "extra": 0} for k in ("object", "background")}
    for name, question, spans, _ in s.tasks:
        asks = s.got[(name, question)]
        last = asks[-1]
        if name == "last10":
            lo, hi = last["window"] or (now - WINDOW_S, now)
            want = in_window(spans, lo, hi)
        else:
            want = [a for a, _ in spans]
        ok = same_times(last["found"], want) if want else last["text"].strip() == "never"
        row = {
            "question": question,
            "truth": len(want),
            "right": ok,
            **{k: [a[k] for a in asks] for k in ("ttft_ms", "call_ms", "reads", "smoothed")},
            "path": sorted({a["path"] for a in asks}),
            "found": last["found"],
            "stable": len({a["text"] for a in asks}) == 1,
        }
        sets[name].append(row)
        if name == "whole":
            hit = matched(last["found"], want)
            c = counts["background" if "background" in question else "object"]
            c["appearances"] += len(want)
            c["found"] += hit
            c["extra"] += len(last["found"]) - hit
        if name == "whole" and len(want) <= WHEN_MAX_APPEARANCES:  # bench/qa.py's (and the absent ones)
            text_ok = same_times(times_in(last["text"]), want) if want else ok
            sets["bench"].append({**row, "right": text_ok})
    out = {name: summary(rows) for name, rows in sets.items()}
    out["whole"]["first_question_ttft_ms"] = round(s.got[s.tasks[0][:2]][0]["ttft_ms"], 1)
    out["appearances"] = counts
    out["unstable"] = [r["question"] for r in sets["whole"] + sets["last10"] if not r["stable"]]
    out["wrong"] = [
        {"set": name, "question": r["question"], "truth": r["truth"], "got": r["found"][:20]}
        for name in ("whole", "last10")
        for r in sets[name]
        if not r["right"]
    ]
    out["per_question"] = [
        {
            "question": w["question"],
            "appearances": w["truth"],
            "ttft_ms": round(statistics.median(w["ttft_ms"]), 2),
            "smoothed": max(w["smoothed"]),
            "last10_ttft_ms": round(statistics.median(x["ttft_ms"]), 2),
            "last10_smoothed": max(x["smoothed"]),
        }
        for w, x in zip(sets["whole"], sets["last10"], strict=True)
    ]
    return out


def interleaved(streams: list[Stream], repeats: int) -> None:
    """Every task asked ``repeats`` times, the streams' tasks interleaved one by one (each round starting
    at the next stream), so a shared machine's load falls on every length alike."""
    for r in range(repeats):
        order = streams[r % len(streams) :] + streams[: r % len(streams)]
        for batch in zip_longest(*(s.tasks for s in order)):
            for s, task in zip(order, batch, strict=True):
                if task is not None:
                    name, question, _, kwargs = task
                    s.got.setdefault((name, question), []).append(ask(s.hub, s.sid, question, **kwargs))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument("--repeats", type=int, default=3, help="times each question is asked")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (on a shared machine 1 avoids spin-waits)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend("scenekv-world")
    streams: list[Stream] = []
    try:
        for path in args.videos:
            truth = load_truth(path)
            # the keys outlive every ingest (6 hours of video: ~25 min on one thread, more when the
            # machine is busy); deleted at the end
            store = MemoryStore(prefix=f"bench:wl:{uuid.uuid4().hex[:8]}:", ttl_s=12 * 3600)
            hub = StreamHub(backend, store, captions=False)
            started = time.perf_counter()
            sid, spent = ingest(hub, path)
            ingest_s = time.perf_counter() - started
            usage = store.index_usage(sid)
            row = {
                "video": path,
                "minutes": round(truth.duration / 60, 1),
                "scenes": len(truth.scenes),
                "frames": spent["frames"],
                "ingest_s": round(ingest_s, 1),
                "append_s": round(spent["append_s"], 1),
                "read_s": round(spent["read_s"], 1),
                "index_readings": usage.readings,
                "index_bytes": usage.bytes,
                "kv_bytes": store.info(sid).bytes,
            }
            s = Stream(path, truth, store, hub, sid, row)
            for question, spans in truth_runs(truth).items():
                s.tasks += [("whole", question, spans, {}), ("last10", question, spans, {"last": WINDOW_S})]
            streams.append(s)
            print(
                f"{Path(path).name}: {row['minutes']} min, {row['scenes']} scenes, ingest {ingest_s:.0f} s "
                f"(appends {spent['append_s']:.0f} s, readings {spent['read_s']:.0f} s), "
                f"{usage.readings} readings",
                flush=True,
            )
        interleaved(streams, args.repeats)
        if args.json:  # the raw asks first: nothing measured is lost if the grading below fails
            raw = {
                s.path: [{"set": k[0], "question": k[1], "asks": v} for k, v in s.got.items()]
                for s in streams
            }
            Path(args.json).with_suffix(".raw.json").write_text(json.dumps(raw) + "\n")
        rows = [{**s.row, **graded(s)} for s in streams]
    finally:
        for s in streams:
            s.store.delete_stream(s.sid)
    for row in rows:
        w, b, last = row["whole"], row["bench"], row["last10"]
        print(
            f"{Path(row['video']).name}: {row['minutes']} min\n"
            f"  whole  {w['right']}/{w['graded']}: TTFT median {w['ttft_ms_median']} ms, max "
            f"{w['ttft_ms_max']} ms (first {w['first_question_ttft_ms']} ms), call median "
            f"{w['call_ms_median']} / max {w['call_ms_max']} ms, reads <= {w['reads_per_question_max']}, "
            f"smoothed <= {w['smoothed_max']}, appearances <= {w['appearances_max']}, {w['paths']}\n"
            + (
                f"  bench  {b['right']}/{b['graded']}: TTFT median {b['ttft_ms_median']} ms, max "
                f"{b['ttft_ms_max']} ms, reads <= {b['reads_per_question_max']}\n"
                if b["asked"]
                else "  bench  no question (nothing appears 1-8 times)\n"
            )
            + f"  last10 {last['right']}/{last['graded']}: TTFT median {last['ttft_ms_median']} ms, max "
            f"{last['ttft_ms_max']} ms, call median {last['call_ms_median']} / max {last['call_ms_max']} "
            f"ms, reads <= {last['reads_per_question_max']}, smoothed <= {last['smoothed_max']}, "
            f"{last['paths']}"
            + "".join(
                f"\n  {k} appearances: {c['found']}/{c['appearances']} found, {c['extra']} extra"
                for k, c in row["appearances"].items()
            )
            + (f"\n  answers that changed between asks: {row['unstable']}" if row["unstable"] else ""),
            flush=True,
        )
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
    }
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
