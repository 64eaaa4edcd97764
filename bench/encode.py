"""Encode cost per frame and per strategy, on full-size architectures with random weights.

Random weights built from the published configs: the compute is the real model's, the outputs are not.
Measures, in one run per model: model build, vision tower + projector s/frame, carrier prefill
s/frame per strategy on top of a stream cache, decode s/token, and peak RSS. Several models in one
command (``--model a,b,c``) are measured one after another in the same process, and a last table
says which of them keeps up with a 1 fps live stream (vision + pool:16 prefill <= 1 s a frame).

    python bench/encode.py [--model random-llava-onevision-qwen2-0.5b,random-smolvlm2-256m,...]
                           [--device cpu] [--dtype bf16|fp32]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import time

import numpy as np
import torch

from scenekv.vlm import SamplingParams, StreamSession, load_backend
from scenekv.vlm.carriers import compress


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (360, 640, 3), dtype=np.uint8) for _ in range(n)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", default="random-llava-onevision-qwen2-0.5b", help="one or more, comma-separated"
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: bf16 where the hardware has it, else fp32")
    ap.add_argument("--batch", type=int, default=4, help="frames per vision forward")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default="native,pool:49,pool:16,topk:16,mean:1")
    ap.add_argument("--context-frames", type=int, default=8, help="frames already in the cache before timing")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs = []
    for model in args.model.split(","):
        results = measure(model.strip(), args)
        runs.append(results)
        if args.json:
            print(json.dumps(results, indent=2), flush=True)
        else:
            report(results)
        gc.collect()
    if len(runs) > 1 and not args.json:
        live_table(runs)


def measure(model: str, args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    backend = load_backend(model, device=args.device, dtype=args.dtype)
    build_s = time.perf_counter() - t0
    dev = backend.device
    results: dict = {
        "model": model,
        "device": str(dev),
        "dtype": str(backend.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "build_s": round(build_s, 2),
    }

    importance = backend.supports_importance  # topk needs it; families without it skip topk
    batch = _frames(args.batch)
    backend.encode_frames(batch[:1])  # warm-up
    vision = []
    for _ in range(args.repeats):  # the path every strategy but topk takes: no attention maps
        _sync(dev)
        t = time.perf_counter()
        feats = backend.encode_frames(batch)
        _sync(dev)
        vision.append((time.perf_counter() - t) / len(batch))
    results["vision_s_per_frame"] = round(statistics.median(vision), 4)
    results["vision_tokens"] = feats.tokens.shape[1]
    results["native_carriers"] = backend.native_tokens_per_frame
    if importance:  # topk's extra: the last layer's attention, recomputed (once, for its carriers)
        _sync(dev)
        t = time.perf_counter()
        feats = backend.encode_frames(batch, need_importance=True)
        _sync(dev)
        results["vision_topk_s_per_frame"] = round((time.perf_counter() - t) / len(batch), 4)

    per_strategy = {}
    for name in args.strategies.split(","):
        if name.startswith("topk") and not importance:
            continue
        sess = StreamSession(backend, name)
        carriers, grid = compress(sess.spec, feats, backend)
        prefill = []
        # The first context_frames segments build a realistic cache (untimed); the vision features of
        # the timed batch are reused for them: only the language model's prefill is measured here.
        for r in range(args.context_frames + args.repeats):
            tag = backend.prompter.tag_ids(float(r))
            segment, positions, end = backend.frame_segment(
                sess.next_position, tag, carriers[r % len(batch)], grid
            )
            _sync(dev)
            t = time.perf_counter()
            backend.forward(segment, sess.cache, positions, logits=False)
            _sync(dev)
            if r >= args.context_frames:
                prefill.append(time.perf_counter() - t)
            sess.next_position = end
        per_strategy[name] = {
            "carriers": sess.tokens_per_frame,
            "prefill_s_per_frame": round(statistics.median(prefill), 4),
            "cache_tokens": sess.cache.get_seq_length(),
            "kv_bytes_per_frame": (segment.shape[0]) * backend.geometry.bytes_per_token,
        }
    results["strategies"] = per_strategy

    sess = StreamSession(backend, "pool:16")
    sess.append([(float(i), f) for i, f in enumerate(_frames(args.batch, seed=2))])
    gen = sess.ask("What happens?", params=SamplingParams(max_new_tokens=args.decode_tokens, temperature=0))
    t = time.perf_counter()
    list(gen)
    total = time.perf_counter() - t
    n = max(len(gen.token_ids), 1)
    results["ttft_s"] = round(gen.ttft_s, 4)
    results["decode_s_per_token"] = round((total - gen.ttft_s) / max(n - 1, 1), 4)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if dev.type == "cuda":
        results["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return results


def report(results: dict) -> None:
    print(
        f"model {results['model']} on {results['device']} ({results['dtype']}, {results['threads']} threads)"
    )
    print(
        f"build {results['build_s']} s; vision+projector {results['vision_s_per_frame']} s/frame "
        f"({results['vision_tokens']} tokens, {results['native_carriers']} native carriers)"
    )
    print("| strategy | carriers/frame | KV/frame | prefill s/frame |")
    print("|---|---|---|---|")
    for name, r in results["strategies"].items():
        kib = r["kv_bytes_per_frame"] / 1024
        print(f"| {name} | {r['carriers']} | {kib:.1f} KiB | {r['prefill_s_per_frame']} |")
    print(
        f"question TTFT {results['ttft_s']} s; decode {results['decode_s_per_token']} s/token; "
        f"peak RSS {results['peak_rss_mb']} MB (of the whole run so far)",
        flush=True,
    )


def live_table(runs: list[dict]) -> None:
    """Which model keeps up with 1 frame a second: vision + pool:16 prefill, per frame."""
    print("| model | vision s/frame | prefill s/frame (pool:16) | native prefill s/frame | 1 fps live |")
    print("|---|---|---|---|---|")
    for r in runs:
        pool = r["strategies"].get("pool:16", {}).get("prefill_s_per_frame")
        native = r["strategies"].get("native", {}).get("prefill_s_per_frame")
        total = r["vision_s_per_frame"] + (pool or 0.0)
        live = "yes" if total <= 1.0 else f"no ({1 / total:.2f} fps)"
        print(f"| {r['model']} | {r['vision_s_per_frame']} | {pool} | {native} | {live} |")


if __name__ == "__main__":
    main()
