"""What storing KV in fewer bits costs: answer fidelity and Redis bytes, per ``--kv-dtype``.

A stream of frames goes through the real model (full-size LLaVA-OV-0.5B architecture, random weights,
fp32 on the CPU); its KV is exported as chunks, each chunk is written and read back through the codec
in every storage dtype, moved to another position (as retrieval does) and questions are answered on
it. Against the ``exact`` chunks, per dtype: the max and mean absolute logit difference and the
greedy-token agreement, teacher-forced (each step is fed the exact run's token, so one early
disagreement does not count for every later step). Bytes per frame are the real blob sizes (KV +
retrieval keys); the stream-hour figure is that times 3600 (1 fps), an extrapolation.

    python bench/kv_dtype.py [--model random-llava-onevision-qwen2-0.5b] [--frames 8] [--tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from scenekv.memory.codec import chunk_keys, decode_chunk, encode_chunk, encode_keys
from scenekv.memory.quant import KV_DTYPES
from scenekv.vlm import Answerer, StreamSession, load_backend

QUESTIONS = (
    "What happened at 00:02?",
    "Describe the scene.",
    "What is on screen now?",
    "What colour is the background?",
    "When did the scene change?",
)


def _frames(n: int) -> list[tuple[float, np.ndarray]]:
    """Frames with structure (gradients and blocks that change), not noise: KV like a real video's."""
    out = []
    ys, xs = np.mgrid[0:360, 0:640]
    for i in range(n):
        img = np.stack([(xs * (i + 1)) % 256, (ys * 2 + 40 * i) % 256, ((xs + ys) // (i + 2)) % 256], -1)
        img[60 + 10 * i : 200 + 10 * i, 100 : 300 + 20 * i] = (40 * i % 256, 200, 90)
        out.append((float(i), img.astype(np.uint8)))
    return out


@torch.inference_mode()
def teacher_forced(answerer: Answerer, chunks, question: str, forced: list[int] | None, n: int):
    """Logits of ``n`` steps; the tokens fed are ``forced`` (or this run's own greedy picks)."""
    b = answerer.backend
    cache, position = answerer.context(chunks)
    ids = answerer.question_ids(question)
    logits = b.forward(b.embed_ids(ids), cache, b.text_positions(position, len(ids)), logits=True)
    position += len(ids)
    steps, picks = [], []
    for i in range(n):
        steps.append(logits)
        pick = int(logits.argmax())
        picks.append(pick)
        token = forced[i] if forced is not None else pick
        logits = b.forward(b.embed_ids([token]), cache, b.text_positions(position, 1), logits=True)
        position += 1
    return torch.stack(steps), picks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="random-llava-onevision-qwen2-0.5b")
    ap.add_argument("--carriers", default="pool:16")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--chunk-frames", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32, help="decode steps per question")
    ap.add_argument("--move", type=int, default=5000, help="positions the chunks are moved by")
    args = ap.parse_args()

    t0 = time.perf_counter()
    backend = load_backend(args.model, dtype="fp32")
    sess = StreamSession(backend, args.carriers)
    clip = _frames(args.frames)
    for i in range(0, len(clip), 4):
        sess.append(clip[i : i + 4])
    exported = [
        sess.export(i, min(i + args.chunk_frames, args.frames) - 1)
        for i in range(0, args.frames, args.chunk_frames)
    ]
    print(
        f"model {args.model} ({backend.dtype}), {args.frames} frames of {args.carriers} in "
        f"{len(exported)} chunks, built and encoded in {time.perf_counter() - t0:.0f} s"
    )
    answerer = sess.answerer()
    inv = backend.rope_inv_freq()

    def moved(chunks):
        out, at = [], sess.next_position + args.move
        for c in chunks:
            out.append(c.moved_to(at, inv))
            at += c.span
        return out

    reference = {}
    for q in QUESTIONS:
        reference[q] = teacher_forced(answerer, moved(exported), q, None, args.tokens)
    print(
        "| --kv-dtype | bytes/frame (KV + keys) | GB per stream-hour at 1 fps (extrapolated) | vs bf16 "
        "| max abs logit diff | mean abs logit diff | greedy tokens equal (teacher-forced) |"
    )
    print("|---|---|---|---|---|---|---|")
    keys = sum(len(encode_keys(chunk_keys(c, None))) for c in exported)
    blobs = {name: [encode_chunk(c, name) for c in exported] for name in KV_DTYPES}
    sizes = {name: (sum(map(len, b)) + keys) / args.frames for name, b in blobs.items()}
    for name in KV_DTYPES:
        per_frame = sizes[name]
        restored = [decode_chunk(b) for b in blobs[name]]
        diffs, means, agree, steps = [], [], 0, 0
        for q in QUESTIONS:
            ref_logits, ref_picks = reference[q]
            logits, picks = teacher_forced(answerer, moved(restored), q, ref_picks, args.tokens)
            d = (logits - ref_logits).abs()
            diffs.append(float(d.max()))
            means.append(float(d.mean()))
            agree += sum(a == b for a, b in zip(picks, ref_picks, strict=True))
            steps += len(picks)
        ratio = per_frame / sizes["bf16"]
        print(
            f"| {name} | {per_frame / 1024:.1f} KiB | {per_frame * 3600 / 1e9:.3f} | {ratio:.2f} "
            f"| {max(diffs):.4f} | {statistics.mean(means):.5f} "
            f"| {agree}/{steps} ({100 * agree / steps:.1f} %) |",
            flush=True,
        )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
