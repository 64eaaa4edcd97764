"""Time to first token vs stream length: SceneKV against re-running transformers over every frame.

    python bench/ttft.py --model random-llava-onevision-qwen2-0.5b --dtype bf16 --device cpu \
        --frames 16,64,256,1024 --baseline-frames 16,64 [--plot docs/ttft.png] [--json out.json]

SceneKV (measured at every length). One stream, 1 fps, ``pool:16`` carriers, the real memory path:
``RollingMemory`` over a real Redis (REDIS_URL or 127.0.0.1:6379, a private key prefix deleted at
the end), frames appended in batches of 8. When the stream reaches each length we flush the writer
and time, from the question to the first token: ``MemoryView.of(rolling)`` (Redis index + export
of the device window) and ``QAEngine.ask`` (retrieval scores, context plan under the token budget,
chunk load from Redis, re-rotation, question prefill, first token), ``max_new_tokens=1``, median of
``--repeats``. Ingest (vision + carriers + prefill + Redis) is paid once per frame and reported
separately. The first ``--real-frames`` frames go through the real vision tower; later frames reuse
those frames' real projector outputs plus small noise (``--synthetic-vision``, on by default),
because running SigLIP on 1024 frames costs ~20 min on a 2-core CPU and the vision output does not
change what a question costs once the frame is in memory. Carrier compression, the LLM prefill of
every frame, chunking, scene tiling and Redis writes are all real.

Baseline (what a user of plain transformers runs per question). ``model.generate(input_ids,
pixel_values_videos=all frames, max_new_tokens=1)`` with the same chat prompt: the vision tower on
every frame and an LLM prefill of 196 native tokens per frame (+1 newline) plus the prompt. It is
measured end to end at ``--baseline-frames``. Longer baselines are EXTRAPOLATED from a cost model
built from measured components, and labelled as such: vision seconds per frame (a batch of
``--vision-batch``), and LM prefill(n) = b n + g n^2 / 2, where b (per token) and g (per
query-key pair of causal attention) come from prefilling ``--probe-tokens`` tokens on caches of
``--attention-at`` random keys/values, i.e. attention is measured at long lengths without paying for
the prefill that would build them. b is fitted on whole prefills at ``--prefill-tokens`` (minus their
attention part); the measured baselines check the model. Baselines whose predicted time exceeds
what is left of ``--time-cap`` are skipped.

Everything runs in ``--dtype``; on a CPU without native bf16 (no AVX512-BF16/AMX) bf16 matmuls are
emulated and far slower than fp32, so pass ``--dtype fp32`` there.
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
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from scenekv.memory import MemoryStore, RollingConfig, RollingMemory, redis_url_default
from scenekv.qa.engine import QAEngine
from scenekv.qa.memory_view import MemoryView
from scenekv.vlm import SamplingParams, VisionFeatures, VLMBackend, load_backend
from scenekv.vlm.kv import build_cache

QUESTION = "What is happening in the video right now?"
BATCH = 8  # frames per append, as an encoder batches a live stream
FRAME_HW = (360, 640)  # synthetic 16:9 frames; resized to the model's 384x384 like any input


# -- helpers -------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def loadavg() -> float:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else float("nan")


def random_frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*FRAME_HW, 3), dtype=np.uint8) for _ in range(n)]


def log(msg: str) -> None:
    print(f"[ttft {time.strftime('%H:%M:%S')} load {loadavg()}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Results:
    setup: dict = field(default_factory=dict)
    ingest: dict = field(default_factory=dict)
    scenekv: list[dict] = field(default_factory=list)
    vision: dict = field(default_factory=dict)
    probes: list[dict] = field(default_factory=list)
    prefill: list[dict] = field(default_factory=list)
    fit: dict = field(default_factory=dict)
    baseline: list[dict] = field(default_factory=list)


# -- SceneKV -------------------------------------------------------------------------------------
class SyntheticVision:
    """Stands in for the vision tower after the first real frames: their real projector outputs
    (cycled, one 'scene' per 10 frames) plus 2% noise, so carriers have real magnitudes."""

    def __init__(self, pool: torch.Tensor, grid: tuple[int, int]) -> None:
        self.pool, self.grid = pool, grid
        self.scale = 0.02 * pool.float().std().item()
        self.calls = 0
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self, images: list[np.ndarray], *, need_importance: bool = False) -> VisionFeatures:
        picks = [(self.calls + i) // 10 % self.pool.shape[0] for i in range(len(images))]
        self.calls += len(images)
        base = self.pool[picks]
        noise = torch.randn(base.shape, generator=self.gen).to(base.device, base.dtype) * self.scale
        return VisionFeatures(tokens=base + noise, grid=self.grid)


def time_question(engine: QAEngine, rolling: RollingMemory, device: torch.device) -> tuple[float, dict]:
    """Seconds from the question to its first token, and the answer's usage (memory_tokens ...)."""
    sync(device)
    t0 = time.perf_counter()
    memory = MemoryView.of(rolling)
    answer = engine.ask(memory, QUESTION, params=SamplingParams(max_new_tokens=1))
    first = None
    for _ in answer:  # one token at most; a random model may pick EOS, which yields no delta
        if first is None:
            sync(device)
            first = time.perf_counter()
    if first is None:
        sync(device)
        first = time.perf_counter()
    return first - t0, dict(answer.usage)


STAGES = {  # where a question's time goes: functions on its path (file, name), outermost first
    "MemoryView.of: Redis index + device window export": ("memory_view.py", "of"),
    "QAEngine.ask: anchor, plan, scores, chunk loads, cache": ("engine.py", "ask"),
    "  the question's queries for retrieval (a sink forward)": ("answer.py", "queries"),
    "  retrieval scores": ("engine.py", "_scores"),
    "  `when` paths tried first (index, captions, scene scan)": ("engine.py", "_index_when"),
    "  context plan + chunk loads": ("engine.py", "_planned_context"),
    "    chunk loads from Redis (+ dequantise)": ("chunks.py", "load_chunks"),
    "  context cache: re-rotation + concat (Answerer._parts)": ("answer.py", "_parts"),
    "Generation: prefill of the question + first token": ("generate.py", "__iter__"),
    "  model forward passes": ("backend.py", "forward_hidden"),
}


def profile_question(engine: QAEngine, rolling: RollingMemory, device: torch.device) -> dict:
    """One question under cProfile and torch's profiler: seconds per stage (cumulative, the
    outermost call of each function named in STAGES) and the torch ops that took the most time."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as ops:
        prof.enable()
        total, usage = time_question(engine, rolling, device)
        prof.disable()
    stats = pstats.Stats(prof).stats  # (file, line, name) -> (prim calls, calls, self s, cum s, callers)
    stages = {}
    for stage, (file, name) in STAGES.items():
        found = [(v[3], v[1]) for (f, _, n), v in stats.items() if f.endswith(file) and n == name]
        if found:  # recursive or per-layer calls: the outermost's cumulative time is the largest
            stages[stage] = {"s": round(max(c for c, _ in found), 4), "calls": sum(n for _, n in found)}
    top_ops = [
        {"op": e.key, "calls": e.count, "self_s": round(e.self_cpu_time_total / 1e6, 4)}
        for e in sorted(ops.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
    ]
    return {"ttft_s": round(total, 4), "usage": usage, "stages": stages, "top_ops": top_ops}


def run_scenekv(backend: VLMBackend, args, res: Results, deadline: float) -> None:
    store = MemoryStore(args.redis_url, f"skvbench:ttft:{uuid.uuid4().hex[:8]}:", ttl_s=3600)
    rolling = RollingMemory.create(
        store, backend, carriers=args.carriers, source="bench:ttft", config=RollingConfig()
    )
    engine = QAEngine(backend, budget_tokens=args.budget, top_k=args.top_k)
    device = backend.device
    real_encode = backend.encode_frames
    lengths = sorted(args.frames)
    appended = 0
    ingest_real = ingest_synth = 0.0
    n_real = n_synth = 0
    synthetic: SyntheticVision | None = None
    pool: list[torch.Tensor] = []
    grid = None

    def capture(images, *, need_importance=False):
        nonlocal grid
        feats = real_encode(images, need_importance=need_importance)
        pool.append(feats.tokens.detach().clone())
        grid = feats.grid
        return feats

    try:
        for target in lengths:
            if time.monotonic() > deadline:
                log(f"time cap reached: SceneKV stops before {target} frames")
                break
            while appended < target:
                real = not args.synthetic_vision or appended < args.real_frames
                n = min(BATCH if real else args.synthetic_batch, target - appended)
                frames = [(float(appended + i), img) for i, img in enumerate(random_frames(n, appended))]
                if real:
                    backend.encode_frames = capture
                else:
                    if synthetic is None:
                        synthetic = SyntheticVision(torch.cat(pool), grid)
                    backend.encode_frames = synthetic
                sync(device)
                t = time.perf_counter()
                rolling.append(frames)
                sync(device)
                dt = time.perf_counter() - t
                if real:
                    ingest_real, n_real = ingest_real + dt, n_real + n
                else:
                    ingest_synth, n_synth = ingest_synth + dt, n_synth + n
                appended += n
            rolling.flush()
            backend.encode_frames = real_encode
            time_question(engine, rolling, device)  # warm-up: first-call allocations, Redis connection
            runs, usage = [], {}
            for _ in range(args.repeats):
                dt, usage = time_question(engine, rolling, device)
                runs.append(dt)
            info = rolling.info()
            row = {
                "frames": target,
                "ttft_s": statistics.median(runs),
                "runs_s": runs,
                "memory_tokens": usage.get("memory_tokens"),
                "prompt_tokens": usage.get("prompt_tokens"),
                "chunks_in_context": usage.get("chunks"),
                "chunks_stored": info.chunks,
                "redis_MB": round(info.bytes / 1e6, 1),
                "load": loadavg(),
            }
            if args.profile:
                row["profile"] = profile_question(engine, rolling, device)
                log(f"profile at {target} frames: {json.dumps(row['profile'], indent=1)}")
            res.scenekv.append(row)
            log(f"SceneKV {target} frames: TTFT {row['ttft_s']:.3f}s {runs}, usage {usage}")
    finally:
        backend.encode_frames = real_encode
        rolling.end()
        store.delete_stream(rolling.sid)
        store.close()
    res.ingest = {
        "real_vision_frames": n_real,
        "real_s_per_frame": ingest_real / n_real if n_real else None,
        "synthetic_vision_frames": n_synth,
        "synthetic_s_per_frame": ingest_synth / n_synth if n_synth else None,
        "tokens_per_frame": rolling.session.tokens_per_frame,
    }


# -- baseline ------------------------------------------------------------------------------------
class Baseline:
    """Plain transformers: every frame's native tokens prefilled with the question, every time."""

    def __init__(self, backend: VLMBackend) -> None:
        self.b = backend
        cfg = backend.model.config
        self.video_id = getattr(cfg, "video_token_id", None) or cfg.video_token_index
        prompter = backend.prompter  # the same system prompt and chat template as SceneKV
        self.before = prompter.sink_ids
        self.after = prompter.question_ids(QUESTION)

    def prompt_tokens(self, frames: int) -> int:
        return len(self.before) + frames * self.b.native_tokens_per_frame + 1 + len(self.after)

    @torch.inference_mode()
    def ttft(self, images: list[np.ndarray]) -> float:
        b = self.b
        video = [self.video_id] * (len(images) * b.native_tokens_per_frame + 1)  # +1: image_newline
        ids = torch.tensor([self.before + video + self.after], device=b.device)
        sync(b.device)
        t0 = time.perf_counter()
        pixels = b.preprocess(images)[None]  # [1, F, 3, S, S], the checkpoint's normalisation
        out = b.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values_videos=pixels,
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=b.tokenizer.pad_token_id,
        )
        out[0, -1].item()
        sync(b.device)
        return time.perf_counter() - t0

    @torch.inference_mode()
    def vision_s_per_frame(self, frames: int) -> float:
        b = self.b
        images = random_frames(frames, 10_000)
        b.native_carriers(b.encode_frames(images[:1]))  # warm-up
        sync(b.device)
        t = time.perf_counter()
        b.native_carriers(b.encode_frames(images))
        sync(b.device)
        return (time.perf_counter() - t) / frames

    @torch.inference_mode()
    def probe_s(self, cache_tokens: int, probe: int) -> float:
        """Prefill ``probe`` tokens on top of a cache of ``cache_tokens`` random keys/values: the
        attention cost at long lengths without paying for the prefill that would build that cache."""
        b = self.b
        cache = b.new_cache()
        if cache_tokens:
            geo = b.geometry
            shape = (geo.layers, geo.kv_heads, cache_tokens, geo.head_dim)
            kv = torch.randn(shape, dtype=b.dtype, device=b.device)
            cache = build_cache([(kv, kv)], b.model.config.get_text_config())
            del kv
        embeds = b.embed_ids(list(range(100, 100 + probe)))
        sync(b.device)
        t = time.perf_counter()
        b.forward(embeds, cache, b.text_positions(cache_tokens, probe), logits=True)
        sync(b.device)
        return time.perf_counter() - t

    @torch.inference_mode()
    def prefill_s(self, tokens: int) -> float:
        b = self.b
        gen = torch.Generator().manual_seed(tokens)
        ids = torch.randint(0, len(b.tokenizer), (tokens,), generator=gen).tolist()
        embeds = b.embed_ids(ids)
        cache = b.new_cache()
        sync(b.device)
        t = time.perf_counter()
        b.forward(embeds, cache, b.text_positions(0, tokens), logits=True)
        sync(b.device)
        return time.perf_counter() - t


def fit_prefill(probes: list[dict], probe: int, whole: list[dict]) -> tuple[float, float]:
    """prefill(n) = b n + g n^2 / 2. g (per query-key pair) is the slope over L of the time to prefill
    ``probe`` tokens on an L-token cache, divided by ``probe``: a difference, so fixed costs and the
    poorer efficiency of small batches cancel. b (per token) comes from whole prefills (``whole``)
    minus their attention part, or from the probe on an empty cache if there are none."""
    L = np.array([p["cache_tokens"] for p in probes], dtype=float)
    t = np.array([p["s"] for p in probes], dtype=float)
    g = 0.0
    if len(probes) >= 2:
        (_, slope), *_ = np.linalg.lstsq(np.stack([np.ones_like(L), L], 1), t, rcond=None)
        g = max(float(slope), 0.0) / probe
    if whole:
        n = np.array([w["tokens"] for w in whole], dtype=float)
        rest = np.array([w["s"] for w in whole], dtype=float) - g * n * n / 2
        return float((n * rest).sum() / (n * n).sum()), g
    return float(t[np.argmin(L)]) / probe, g


def run_baseline(backend: VLMBackend, args, res: Results, deadline: float) -> Callable[[float], float]:
    base = Baseline(backend)
    res.vision = {"batch": args.vision_batch, "s_per_frame": base.vision_s_per_frame(args.vision_batch)}
    log(f"vision + projector + pooling: {res.vision['s_per_frame']:.3f} s/frame")
    base.probe_s(0, 32)  # warm-up
    for length in args.attention_at:
        s = base.probe_s(length, args.probe_tokens)
        res.probes.append(
            {"cache_tokens": length, "probe_tokens": args.probe_tokens, "s": s, "load": loadavg()}
        )
        log(f"LM prefill of {args.probe_tokens} tokens on a {length}-token cache: {s:.2f}s")
    for tokens in args.prefill_tokens:  # whole prefills from an empty cache
        if time.monotonic() > deadline:
            log(f"time cap reached: no whole prefill of {tokens} tokens")
            break
        s = base.prefill_s(tokens)
        res.prefill.append({"tokens": tokens, "s": s, "load": loadavg()})
        log(f"LM prefill {tokens} tokens: {s:.2f}s")
    b, g = fit_prefill(res.probes, args.probe_tokens, res.prefill)
    vis = res.vision["s_per_frame"]
    res.fit = {
        "prefill_s": f"{b:.4g}*n + {g:.4g}*n^2/2",
        "b_s_per_token": b,
        "g_s_per_query_key": g,
        "vision_s_per_frame": vis,
    }

    def prefill(n: float) -> float:
        return b * n + g * n * n / 2  # causal: token i attends to i keys

    for p_ in res.prefill:
        p_["model_s"] = prefill(p_["tokens"])

    def predict(frames: float) -> float:
        return vis * frames + prefill(base.prompt_tokens(round(frames)))

    for frames in sorted(args.baseline_frames):
        guess = predict(frames)
        left = deadline - time.monotonic()
        if guess > left:
            log(f"baseline {frames} frames predicted {guess:.0f}s > {left:.0f}s left of the cap: skipped")
            continue
        images = random_frames(frames, 20_000 + frames)
        if not res.baseline:
            base.ttft(images[:1])  # warm-up of generate()'s own first-call costs
        s = base.ttft(images)
        res.baseline.append(
            {
                "frames": frames,
                "ttft_s": s,
                "predicted_s": guess,
                "prompt_tokens": base.prompt_tokens(frames),
                "load": loadavg(),
            }
        )
        log(f"baseline {frames} frames ({base.prompt_tokens(frames)} tokens): {s:.2f}s (model {guess:.2f}s)")
    res.setup["baseline_prompt_tokens"] = {f: base.prompt_tokens(f) for f in args.frames}
    return predict


# -- report --------------------------------------------------------------------------------------
def table(res: Results, predict: Callable[[float], float] | None) -> list[dict]:
    measured = {r["frames"]: r for r in res.baseline}
    rows = []
    for r in res.scenekv:
        f = r["frames"]
        if f in measured:
            base, kind = measured[f]["ttft_s"], "measured"
        elif predict is not None:
            base, kind = predict(f), "extrapolated"
        else:
            base, kind = None, "-"
        rows.append({**r, "baseline_s": base, "baseline_kind": kind})
    return rows


def markdown(rows: list[dict], res: Results) -> str:
    out = [
        "| frames | SceneKV TTFT s (median of runs) | memory_tokens | baseline prompt tokens "
        "| baseline TTFT s | baseline / SceneKV |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{x:.2f}" for x in r["runs_s"])
        base = "-" if r["baseline_s"] is None else f"{r['baseline_s']:.1f} ({r['baseline_kind']})"
        if r["baseline_kind"] == "extrapolated":
            base = f"**~{r['baseline_s']:.0f} (extrapolated)**"
        ratio = "-" if r["baseline_s"] is None else f"{r['baseline_s'] / r['ttft_s']:.0f}x"
        tokens = res.setup.get("baseline_prompt_tokens", {}).get(r["frames"], "-")
        out.append(
            f"| {r['frames']} | {r['ttft_s']:.2f} ({runs}) | {r['memory_tokens']} | {tokens} "
            f"| {base} | {ratio} |"
        )
    return "\n".join(out)


def plot(rows: list[dict], res: Results, predict: Callable[[float], float] | None, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no plot (pip install matplotlib)")
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    f = [r["frames"] for r in rows]
    ax.plot(f, [r["ttft_s"] for r in rows], "o-", color="tab:blue", label="SceneKV (measured)")
    if predict is not None:
        xs = np.geomspace(min(f), max(f), 50)
        label = "baseline cost model: vision s/frame + prefill(n)"
        ax.plot(xs, [predict(x) for x in xs], "--", color="tab:red", alpha=0.5, label=label)
    meas = [(b["frames"], b["ttft_s"]) for b in res.baseline]
    if meas:
        ax.plot(*zip(*meas, strict=True), "s", color="tab:red", label="baseline (measured)")
    exo = [(r["frames"], r["baseline_s"]) for r in rows if r["baseline_kind"] == "extrapolated"]
    if exo:
        ax.plot(*zip(*exo, strict=True), "x", color="tab:red", ms=9, label="baseline (extrapolated)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(f, [str(x) for x in f])
    ax.set_xlabel("stream length (frames at 1 fps)")
    ax.set_ylabel("time to first token (s)")
    s = res.setup
    ax.set_title(f"TTFT: {s['model']} {s['dtype']} on {s['device']} ({s['threads']} threads)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return True


def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="random-llava-onevision-qwen2-0.5b")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--frames", type=parse_ints, default=[16, 64, 256, 1024], help="SceneKV stream lengths")
    p.add_argument("--baseline-frames", type=parse_ints, default=[16], help="baseline lengths to measure")
    p.add_argument(
        "--prefill-tokens", type=parse_ints, default=[1024, 2048], help="whole prefills checking the model"
    )
    p.add_argument("--attention-at", type=parse_ints, default=[0, 4096, 16384], help="probe cache lengths")
    p.add_argument("--probe-tokens", type=int, default=256, help="tokens prefilled on each probe cache")
    p.add_argument("--vision-batch", type=int, default=2, help="frames in the vision timing batch")
    p.add_argument("--carriers", default="pool:16")
    p.add_argument("--budget", type=int, default=4096, help="QAEngine token budget (default 4096)")
    p.add_argument("--top-k", type=int, default=4, help="QAEngine retrieved chunks (default 4)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--real-frames", type=int, default=8, help="frames through the real vision tower")
    p.add_argument(
        "--synthetic-batch", type=int, default=32, help="frames per append once vision is synthesised"
    )
    p.add_argument(
        "--no-synthetic-vision",
        dest="synthetic_vision",
        action="store_false",
        help="run the vision tower on every SceneKV frame (slow on CPU)",
    )
    p.add_argument("--time-cap", type=float, default=1500.0, help="seconds for the whole run (1500)")
    p.add_argument("--redis-url", default=None)
    p.add_argument("--plot", default=None, help="write a PNG plot here (needs matplotlib)")
    p.add_argument("--json", default=None, help="write raw results here")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument(
        "--profile", action="store_true", help="also profile one question per length: time per stage, top ops"
    )
    args = p.parse_args()
    args.redis_url = args.redis_url or redis_url_default()

    started = time.monotonic()
    deadline = started + args.time_cap
    res = Results()
    t = time.perf_counter()
    backend = load_backend(args.model, device=args.device, dtype=args.dtype)
    res.setup = {
        "model": args.model,
        "dtype": str(backend.dtype).removeprefix("torch."),
        "device": str(backend.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "build_s": round(time.perf_counter() - t, 1),
        "load_start": loadavg(),
        "carriers": args.carriers,
        "budget_tokens": args.budget,
        "top_k": args.top_k,
        "command": " ".join(["python", *sys.argv]),
    }
    log(f"built {args.model} in {res.setup['build_s']}s")
    # The baseline goes first with half the cap, so it is measured even if the stream runs long.
    predict = None
    if not args.skip_baseline:
        predict = run_baseline(backend, args, res, started + 0.5 * args.time_cap)
    run_scenekv(backend, args, res, deadline)
    res.setup["load_end"] = loadavg()
    res.setup["elapsed_s"] = round(time.monotonic() - started, 1)
    rows = table(res, predict)
    print(markdown(rows, res))
    ing = res.ingest
    print()
    if ing.get("real_s_per_frame"):
        print(
            f"ingest, real vision: {ing['real_s_per_frame']:.3f} s/frame ({ing['real_vision_frames']} frames)"
        )
    if ing.get("synthetic_s_per_frame"):
        print(
            f"ingest, synthesised vision: {ing['synthetic_s_per_frame']:.3f} s/frame "
            f"({ing['synthetic_vision_frames']} frames, {args.synthetic_batch} per append; "
            "carriers + prefill + Redis)"
        )
    if res.fit:
        print(
            f"baseline model: vision {res.fit['vision_s_per_frame']:.3f} s/frame; "
            f"prefill {res.fit['prefill_s']} s (n = prompt tokens)"
        )
        for p_ in res.prefill:
            print(
                f"  check: prefill {p_['tokens']} tokens measured {p_['s']:.2f}s, model {p_['model_s']:.2f}s"
            )
        for b_ in res.baseline:
            print(
                f"  check: baseline {b_['frames']} frames measured {b_['ttft_s']:.2f}s, "
                f"model {b_['predicted_s']:.2f}s"
            )
    print(f"setup: {json.dumps(res.setup)}")
    if args.plot and plot(rows, res, predict, args.plot):
        print(f"plot: {args.plot}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, **res.__dict__}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
