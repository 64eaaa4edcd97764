"""Encode cost per frame and per strategy, on the full-size LLaVA-OV-0.5B architecture.

Random weights built from the published config: the compute is the real model's, the outputs are not.
Measures, in one run: model build, vision tower + projector s/frame (729 tokens), carrier prefill
s/frame per strategy on top of a stream cache, decode s/token, and peak RSS.

    python bench/encode.py [--model random-llava-onevision-qwen2-0.5b] [--device cpu] [--dtype bf16|fp32]
"""

from __future__ import annotations

import argparse
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
    ap.add_argument("--model", default="random-llava-onevision-qwen2-0.5b")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: bf16 where the hardware has it, else fp32")
    ap.add_argument("--batch", type=int, default=4, help="frames per vision forward")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--strategies", default="native,pool:49,pool:16,topk:16,mean:1")
    ap.add_argument("--context-frames", type=int, default=8, help="frames already in the cache before timing")
    ap.add_argument("--decode-tokens", type=int, default=16)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    backend = load_backend(args.model, device=args.device, dtype=args.dtype)
    build_s = time.perf_counter() - t0
    dev = backend.device
    results: dict = {
        "model": args.model,
        "device": str(dev),
        "dtype": str(backend.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "build_s": round(build_s, 2),
    }

    batch = _frames(args.batch)
    backend.encode_frames(batch[:1], need_importance=True)  # warm-up
    vision = []
    for _ in range(args.repeats):
        _sync(dev)
        t = time.perf_counter()
        feats = backend.encode_frames(batch, need_importance=True)
        _sync(dev)
        vision.append((time.perf_counter() - t) / len(batch))
    results["vision_s_per_frame"] = round(statistics.median(vision), 4)

    per_strategy = {}
    for name in args.strategies.split(","):
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

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"model {results['model']} on {results['device']} ({results['dtype']}, {results['threads']} threads)"
    )
    print(
        f"build {results['build_s']} s; vision+projector {results['vision_s_per_frame']} s/frame (729 tokens)"
    )
    print("| strategy | carriers/frame | KV/frame | prefill s/frame |")
    print("|---|---|---|---|")
    for name, r in per_strategy.items():
        kib = r["kv_bytes_per_frame"] / 1024
        print(f"| {name} | {r['carriers']} | {kib:.1f} KiB | {r['prefill_s_per_frame']} |")
    print(
        f"question TTFT {results['ttft_s']} s; decode {results['decode_s_per_token']} s/token; "
        f"peak RSS {results['peak_rss_mb']} MB"
    )


if __name__ == "__main__":
    main()
