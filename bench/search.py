"""Search across streams: is the right scene in the top 3 for a thing that appears once, over 5 streams.

    for s in 101 102 103 104 105; do
        scenekv make-world /tmp/bench/w$s.mp4 --seed $s --duration 600 --fps 5
    done
    python bench/search.py /tmp/bench/w10{1,2,3,4,5}.mp4 --threads 1 [--captions] [--json out.json]

Every video (with its ground-truth sidecar) is ingested through ``StreamHub`` in this process, all
into one fresh Redis prefix (``benchsearch-<uuid>:``; the streams are deleted at the end), as
bench/when_index.py does: the world model, fp32, frames at 1 fps in batches of 8 with one background
step after each, the stream's end making the readings still due; without captions unless
``--captions`` (then the search also has the scenes' captions). Then qa/search.py's ``search`` (what
``SceneKVService.search`` and ``scenekv search`` call) runs on the MemoryStore over the streams' ids,
no Ray.

Asked: the text of every thing that shows in exactly one scene of all the videos' ground truth:
an object ("red circle"), a background ("yellow background"), or a scene's description, object on
background ("red circle on white": on five 10-minute videos no object or background shows only
once, so these are the things that do). A query is right at k if one of its k best hits is in the
thing's stream and overlaps its scene's time, +-2 s on both edges; reported at k = 1 and 3, with
the wall time of each search (one search first, not counted, warms the connection), and every miss
with its top 3 and what the frames of the truth scene were read as (a misread scene vs ranking).
Also, for things that recur, R-precision: for each object and background appearing n times, how
many of its n best hits are its scenes. ``--threads 1`` on a shared 2-core machine (as
bench/when_index.py explains).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import torch

from scenekv.memory import MemoryStore
from scenekv.qa.search import search
from scenekv.vlm import load_backend
from scenekv.workers.stream_hub import StreamHub
from scenekv.world.truth import WorldScene, WorldTruth, load_truth

sys.path.insert(0, str(Path(__file__).parent))
from when_index import ingest  # noqa: E402  (bench/when_index.py: the same ingest)

TOL = 2.0  # s, on both edges of the truth scene
K = 3


def things(truths: dict[str, WorldTruth]) -> dict[str, dict[str, list[tuple[str, WorldScene]]]]:
    """Each kind's things (query text) with the (stream, scene) pairs showing them, over all streams."""
    out: dict[str, dict[str, list[tuple[str, WorldScene]]]] = {"object": {}, "background": {}, "scene": {}}
    for sid, truth in truths.items():
        for s in truth.scenes:
            out["background"].setdefault(f"{s.background} background", []).append((sid, s))
            if s.object:
                out["object"].setdefault(s.object_name, []).append((sid, s))
                out["scene"].setdefault(s.describe(), []).append((sid, s))
    return out


def overlaps(hit, sid: str, scene: WorldScene) -> bool:
    end = hit.end if hit.end is not None else float("inf")
    return hit.stream_id == sid and hit.start <= scene.end + TOL and end >= scene.start - TOL


def timed_search(store, text: str, sids: list[str], limit: int) -> tuple[list, float]:
    t = time.perf_counter()
    hits = search(store, text, sids, limit)
    return hits, (time.perf_counter() - t) * 1000


def once(store, sids: list[str], names: dict[str, str], shown) -> dict:
    """Things shown in exactly one scene: right at 1 and at K, latency, misses."""
    asked, ms, misses = [], [], []
    for kind, by_text in shown.items():
        for text, where in sorted(by_text.items()):
            if len(where) != 1:
                continue
            sid, scene = where[0]
            hits, took = timed_search(store, text, sids, 10)
            ms.append(took)
            rank = next((i + 1 for i, h in enumerate(hits) if overlaps(h, sid, scene)), None)
            inside = rank is not None and scene.start - TOL <= hits[rank - 1].start <= scene.end + TOL
            asked.append({"kind": kind, "text": text, "rank": rank, "start_inside": inside})
            if rank is None or rank > K:
                read = store.readings(sid, scene.start, scene.end)
                misses.append(
                    {
                        "text": text,
                        "want": f"{names[sid]} {scene.start:.1f}-{scene.end:.1f}",
                        "rank": rank,
                        "top3": [
                            f"{names[h.stream_id]} {h.start:.0f}-{h.end if h.end is None else round(h.end)} "
                            f"{h.caption!r} {h.score:.2f}"
                            for h in hits[:K]
                        ],
                        "read_in_scene": dict(Counter(r.object for r in read).most_common(3)),
                        "bg_read_in_scene": dict(Counter(r.background for r in read).most_common(3)),
                    }
                )
    n = len(asked)
    return {
        "candidates": {k: sum(len(w) == 1 for w in v.values()) for k, v in shown.items()},
        "queries": n,
        "top1": sum(a["rank"] == 1 for a in asked),
        "top3": sum(a["rank"] is not None and a["rank"] <= K for a in asked),
        "top1_rate": round(sum(a["rank"] == 1 for a in asked) / max(1, n), 3),
        "top3_rate": round(sum(a["rank"] is not None and a["rank"] <= K for a in asked) / max(1, n), 3),
        "by_kind": {
            k: {
                "queries": sum(a["kind"] == k for a in asked),
                "top1": sum(a["kind"] == k and a["rank"] == 1 for a in asked),
                "top3": sum(a["kind"] == k and a["rank"] is not None and a["rank"] <= K for a in asked),
            }
            for k in shown
        },
        "start_inside": sum(a["start_inside"] for a in asked),
        "latency_ms_median": round(statistics.median(ms), 2) if ms else None,
        "latency_ms_max": round(max(ms), 2) if ms else None,
        "asked": asked,
        "misses": misses,
    }


def recurring(store, sids: list[str], shown) -> dict:
    """R-precision for things shown in more than one scene: of the n best hits for a thing shown n
    times, how many are (distinct) scenes of it."""
    out = {}
    for kind in ("object", "background"):
        found = total = 0
        worst = []
        for text, where in sorted(shown[kind].items()):
            n = len(where)
            if n < 2:
                continue
            hits, _ = timed_search(store, text, sids, n)
            left = list(where)
            got = 0
            for h in hits:
                match = next((w for w in left if overlaps(h, *w)), None)
                if match is not None:
                    left.remove(match)
                    got += 1
            found, total = found + got, total + n
            worst.append((round(got / n, 3), text, n))
        worst.sort()
        out[kind] = {
            "things": len(worst),
            "scenes": total,
            "found_in_top_n": found,
            "r_precision_micro": round(found / max(1, total), 3),
            "r_precision_macro": round(statistics.mean(w[0] for w in worst), 3) if worst else None,
            "worst": [f"{t} ({n}x): {r}" for r, t, n in worst[:5]],
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+")
    p.add_argument("--captions", action="store_true", help="caption scenes at ingest (search reads them too)")
    p.add_argument("--json", default=None, help="write the results here too")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (on a shared machine 1 avoids spin-waits)"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = load_backend("scenekv-world")
    prefix = f"benchsearch-{uuid.uuid4().hex[:8]}:"
    store = MemoryStore(prefix=prefix, ttl_s=3600)
    truths, names, streams = {}, {}, []
    try:
        for path in args.videos:
            hub = StreamHub(backend, store, captions=args.captions)
            t = time.perf_counter()
            sid, spent = ingest(hub, path)
            truths[sid], names[sid] = load_truth(path), Path(path).stem
            streams.append(
                {
                    "video": path,
                    "stream_id": sid,
                    "scenes": len(truths[sid].scenes),
                    "scenes_found": len(store.scenes(sid)),
                    "captioned": sum(bool(s.caption) for s in store.scenes(sid)),
                    "frames": spent["frames"],
                    "ingest_s": round(time.perf_counter() - t, 1),
                }
            )
            print(json.dumps(streams[-1]), flush=True)
        sids = list(truths)
        shown = things(truths)
        timed_search(store, "warm up", sids, 10)
        result = {"once": once(store, sids, names, shown), "recurring": recurring(store, sids, shown)}
    finally:
        for sid in truths:
            store.delete_stream(sid)
        left = sum(1 for _ in store.client.scan_iter(match=f"{prefix}*", count=1000))
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "captions": args.captions,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
        "prefix": prefix,
        "keys_left_after_delete": left,
    }
    summary = {"meta": meta, "streams": streams, **result}
    brief = {k: v for k, v in summary["once"].items() if k != "asked"}
    print(json.dumps({"meta": meta, "once": brief, "recurring": summary["recurring"]}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
