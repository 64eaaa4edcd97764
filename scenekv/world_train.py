"""Train SceneKV's world model: a small LLaVA-OneVision, from scratch, on the synthetic world.

No pretrained checkpoint is reachable offline, and a random one answers noise, so nothing about
SceneKV's answers could be judged. This trains the real ``LlavaOnevisionForConditionalGeneration``
class (SigLIP tower at 384 px / patch 14 -> 27x27 tokens, its own 2x2 pooling to 196 native video
tokens, Qwen2 language model) on videos of :mod:`scenekv.ingest.world`, rendered with x264 and read
back through ``open_source`` like any user file.

Two stages, one seed:

1. **Vision.** The tower and projector learn to put a frame's content (background colour, object
   shape and colour) into the mean of its tokens and into each ``pool:16`` cell: linear probes read
   it there, so any carrier strategy, and any attention average over carriers, keeps it. Each patch
   token also says what it shows (background, the outline of which shape, the inside), so that the
   shape, which only the outline's patches hold, is learnt at all (``patch_labels``).
2. **Language.** The vision half is frozen and every training frame is encoded once into a bank of
   carriers. An anchored question's context ends at the anchor's frame (``anchor_last``, as the QA
   engine lays it out for this model), so "what is on screen at T" is read off the newest frame.
   The language model is then trained on contexts laid out exactly as SceneKV's stream KV lays them
   out (``vlm/prompt.py``): the sink, time-tagged frame segments, the question (with the
   anchor's frame tag, as the QA engine writes it), the answer. Contexts are timelines of real scenes
   from the bank at 1 fps, cut into chunks as retrieval returns them, with times up to two hours;
   `when` questions are asked as the QA engine asks them (qa/scene_check.py): of one scene at a time,
   a few of its frames, answered with what the scene shows of the kind asked about.

Everything is deterministic for a seed on one machine (torch threads fixed); the model card records
the command, seeds, steps, times, the loss curve and held-out accuracy.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scenekv.ingest.world import PALETTE, SHAPES, WorldScene, load_truth, make_world_video, sample_world
from scenekv.qa.scene_check import CHECK_FRAMES, check_indices
from scenekv.vlm.prompt import FORMAT_FILE, Prompter, PromptFormat, clock

log = logging.getLogger(__name__)

WORLD_SYSTEM_PROMPT = (
    "You watch a video of coloured shapes. Each frame is followed by its time, like <01:23>. "
    "Answer in a few words."
)
WORLD_FORMAT = PromptFormat(
    system=WORLD_SYSTEM_PROMPT,
    time_format="clock",
    tag_after=True,
    anchor_tag=True,
    anchor_last=True,
    scene_check="{question} In this scene?",
)
COLOURS = list(PALETTE)
TRAIN_SEED_BASE = 100_000  # training videos: seeds TRAIN_SEED_BASE + i; held-out ones never go here
EVAL_SEED_BASE = 900_000
SIZES = [(640, 360), (480, 480), (360, 640), (800, 448), (512, 384)]
SHORT_SCENE_S = 4.0
CARRIER_MIX = {"native": 0.3, "pool:16": 0.5, "mean:1": 0.2}


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    videos: int = 64
    video_s: float = 120.0
    render_fps: float = 5.0
    eval_videos: int = 4
    vision_steps: int = 700
    vision_batch: int = 12
    vision_lr: float = 2e-3
    lm_steps: int = 1800
    lm_batch: int = 6
    lm_lr: float = 2e-3
    max_context_tokens: int = 1100
    threads: int = 2

    @classmethod
    def smoke(cls, seed: int = 0) -> TrainConfig:
        return cls(
            seed=seed, videos=3, video_s=40.0, eval_videos=1, vision_steps=40, lm_steps=100, lm_batch=2
        )


# -- the model ----------------------------------------------------------------------------------
def world_model_config(vocab_size: int):
    """LLaVA-OneVision's geometry (384 px, patch 14, 27x27 -> 196 native) in narrow, shallow towers."""
    from scenekv.vlm.configs import _llava_ov

    return _llava_ov(
        vision={
            "hidden_size": 96,
            "intermediate_size": 256,
            "num_hidden_layers": 3,
            "num_attention_heads": 4,
        },
        text={
            "hidden_size": 128,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10_000.0},
        },
        vocab_size=vocab_size,
    )


# -- questions and answers ----------------------------------------------------------------------
_BG_Q = [
    "What colour is the background{t}?",
    "What color is the background{t}?",
    "What is the background colour{t}?",
    "What is the background color{t}?",
    "Which colour is the background{t}?",
    "What colour is the screen{t}?",
]
_OBJ_Q = [
    "What shape is on screen{t}?",
    "What object is shown{t}?",
    "What shape is shown{t}?",
    "Which object is on screen{t}?",
    "What object is visible{t}?",
    "Is there a shape on screen{t}?",
]
_SCREEN_Q = [
    "What is on screen{t}?",
    "What is shown{t}?",
    "What do you see{t}?",
    "Describe the scene{t}.",
    "What is in the video{t}?",
    "Describe what happens in this part of the video in one short sentence.",
]
_WHEN_OBJ_Q = [
    "When did the {o} appear?",
    "When was the {o} on screen?",
    "When is the {o} shown?",
    "When did a {o} appear?",
    "When do we see the {o}?",
]
_WHEN_BG_Q = [
    "When was the background {c}?",
    "When did the background turn {c}?",
    "When is the background {c}?",
    "When was the {u} background {c}?",
]


def _time_words(rng: random.Random, kind: str, t: float, now: float) -> str:
    if kind == "now":
        return rng.choice(
            [
                "",
                " now",
                " right now",
                " at the moment",
                " in the last 10 seconds",
                " in the last 30 seconds",
                " currently",
            ]
        )
    if kind == "range":
        a, b = max(0.0, t - rng.uniform(2, 20)), t + rng.uniform(2, 20)
        return f" between {clock(a)} and {clock(b)}"
    s = math.floor(t)
    form = rng.random()
    if form < 0.55:
        text = clock(s)
    elif form < 0.7:
        m, sec = divmod(s, 60)
        text = f"{m}:{sec:02d}" if s < 3600 else clock(s)
    elif form < 0.85:
        text = f"{s} seconds"
    else:
        m, sec = divmod(s, 60)
        text = f"{m}m{sec}s"
    return f" {rng.choice(['at', 'at', 'around'])} {text}"


def answer_for(kind: str, scene: WorldScene) -> str:
    if kind == "bg":
        return scene.background
    if kind == "obj":
        return scene.object_name
    return scene.describe()


def tokenizer_corpus() -> list[str]:
    """The text the world tokenizer is fitted on: every phrase of the questions and answers."""
    lines = [WORLD_SYSTEM_PROMPT] + ["never. nothing. background on at between and seconds now"] * 20
    lines += ["In this scene?"] * 20
    lines += [
        q.format(t=" at 01:23", o="purple triangle", c="green", u="whole")
        for q in _BG_Q + _OBJ_Q + _SCREEN_Q + _WHEN_OBJ_Q + _WHEN_BG_Q
    ]
    for c in COLOURS:
        for s in SHAPES:
            lines.append(f"{c} {s} on {c}. {c} background. {c} {s}")
    lines += [f"<{m:02d}:{s:02d}> at {m:02d}:{s:02d}," for m in range(100) for s in range(0, 100, 7)]
    lines += [f"{n:02d} {n}" for n in range(100)]
    lines += ["What happened at 01:23? In the last 30 seconds? Right now? At the moment? Currently."]
    return lines


def build_world_tokenizer(vocab_size: int = 512):
    """Byte-level BPE whose numbers split into pairs of digits: ``05:41`` is ``05`` ``:`` ``41``."""
    from tokenizers import Regex, pre_tokenizers

    from scenekv.vlm.tokenizer import train_chat_tokenizer

    digits_in_pairs = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d\d?"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    return train_chat_tokenizer(tokenizer_corpus() * 3, vocab_size=vocab_size, pre_tokenizer=digits_in_pairs)


# -- data: rendered world videos, read back through ingest ----------------------------------------
@dataclass
class BankScene:
    scene: WorldScene
    frames: list[int]  # rows of the feature bank, in time order (1 fps)


def _render(args: tuple[str, int, float, tuple[int, int], float, float]) -> str:
    path, seed, duration, size, fps, max_scene = args
    truth = sample_world(seed, duration, max_scene=max_scene)
    make_world_video(path, seed=seed, duration=duration, size=size, fps=fps, truth=truth, preset="ultrafast")
    return path


def render_videos(out: Path, seeds: list[int], duration: float, fps: float, workers: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, seed in enumerate(seeds):
        # half with 3-4 s scenes: many distinct objects, so that the vision stage learns shapes
        # rather than memorising which shape each of a few hundred objects had
        max_scene = SHORT_SCENE_S if i % 2 == 0 else 40.0
        path = out / f"world-{seed}.mp4"
        if not (path.exists() and path.with_suffix(".json").exists()):
            jobs.append((str(path), seed, duration, SIZES[i % len(SIZES)], fps, max_scene))
    if jobs:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_render, jobs))
    return [out / f"world-{s}.mp4" for s in seeds]


def decode_frames(path: Path, side: int, fps: float = 1.0) -> tuple[torch.Tensor, list[float]]:
    """All frames at ``fps`` through ``open_source`` (as the service reads a file), resized to the
    vision input exactly as ``LlavaOnevisionBackend.preprocess`` does, kept as uint8 [F, S, S, 3]."""
    from PIL import Image

    from scenekv.defaults import VISION_MAX_SIDE
    from scenekv.ingest import open_source

    images, times = [], []
    with open_source(str(path), fps=fps, max_side=VISION_MAX_SIDE) as src:
        for f in src:
            img = Image.fromarray(f.image).convert("RGB").resize((side, side), Image.BICUBIC)
            images.append(torch.from_numpy(np.asarray(img).copy()))
            times.append(f.pts)
    return torch.stack(images), times


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [F, S, S, 3] -> the SigLIP-normalised [F, 3, S, S] the tower reads (mean = std = 0.5)."""
    return (frames.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5


def labels_for(scene: WorldScene) -> tuple[int, int, int]:
    shape = 0 if scene.object is None else 1 + SHAPES.index(scene.object)
    colour = 0 if scene.object_colour is None else 1 + COLOURS.index(scene.object_colour)
    return COLOURS.index(scene.background), shape, colour


PATCH_GRID = 27  # 384 px / patch 14
OUTLINE, INSIDE, IGNORE = (1, 2, 3), 4, -100


def patch_labels(truth, t: float, side: int = 384, grid: int = PATCH_GRID) -> np.ndarray:
    """What each patch of the frame at ``t`` shows: 0 background, 1-3 the outline of a circle,
    square or triangle, 4 the inside of the object; IGNORE while a fade or dissolve mixes scenes.

    A shape is a property of its outline, which a few dozen patches of 729 hold. One label per
    frame, read off the mean token, left the tower at chance on shapes; a label per patch teaches
    it where the outline is and what it looks like, and the mean then counts the patches."""
    out = np.zeros((grid, grid), np.int64)
    for tr in truth.transitions:
        if tr.kind != "cut" and abs(t - tr.at) <= tr.duration / 2 + 0.1:
            return np.full((grid, grid), IGNORE, np.int64)
    scene = truth.scene_at(t)
    if scene.object is None:
        return out
    from scenekv.ingest.world import _mask

    w, h = truth.size
    cx, cy = scene.at(t, w, h)
    r = scene.size * h / 2
    k = 5  # sample points per patch side
    sub = (np.arange(grid * k) + 0.5) * (side // grid) / k  # patches cover the first 27 x 14 px
    xs, ys = np.meshgrid(sub * w / side - cx, sub * h / side - cy)
    inside = _mask(scene.object, xs, ys, r).reshape(grid, k, grid, k).mean(axis=(1, 3))
    out[inside > 0.97] = INSIDE
    out[(inside > 0.03) & (inside <= 0.97)] = OUTLINE[SHAPES.index(scene.object)]
    return out


# -- stage 1: vision -----------------------------------------------------------------------------
class VisionProbe(torch.nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bg = torch.nn.Linear(dim, len(COLOURS))
        self.shape = torch.nn.Linear(dim, 1 + len(SHAPES))
        self.colour = torch.nn.Linear(dim, 1 + len(COLOURS))
        self.patch = torch.nn.Linear(dim, 5)  # per token: background, outline of a shape, inside

    def loss(self, tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, float]:
        """CE of every token [F, N, D] against its frame's labels [F, 3]; also the accuracy."""
        n = tokens.shape[1]
        total, correct = 0.0, 1.0
        for head, col in ((self.bg, 0), (self.shape, 1), (self.colour, 2)):
            logits = head(tokens)
            target = labels[:, col].unsqueeze(1).expand(-1, n)
            total = total + F.cross_entropy(logits.flatten(0, 1), target.flatten())
            correct = correct * (logits.argmax(-1) == target).float()
        return total, float(correct.mean())


def vision_tokens(model, pixels: torch.Tensor) -> torch.Tensor:
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    return model.model.multi_modal_projector(out.hidden_states[-1])


def carrier_views(model, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """The carriers each strategy would give, from projected tokens [F, 729, D]."""
    f, n, d = tokens.shape
    side = int(math.isqrt(n))
    grid = tokens.transpose(1, 2).reshape(f, d, side, side)
    return {
        "native": model.model.apply_pooling(tokens),
        "pool:16": F.adaptive_avg_pool2d(grid, 4).flatten(2).transpose(1, 2),
        "mean:1": tokens.mean(dim=1, keepdim=True),
    }


ORIENTATIONS = 6
# SceneTiling reads hidden_states[1] (scenekv.json): frozen layer 0's output is local, so a
# moving object changes only the patches it covers. The last layer's attention spreads the object
# over every token: consecutive frames of one scene fell to cosine 0.4 and SceneTiling cut a held-out
# 150 s video's 7 scenes into 15 (docs/benchmarks.md); from layer 0's output it found the 7.
SIGNATURE_LAYER = 1


def init_edge_energy(model, orientations: int = ORIENTATIONS) -> None:
    """Start the tower as an edge-orientation meter (train() then keeps it frozen).

    A shape here differs from another only in its outline's orientations (a square's are horizontal
    and vertical, a triangle's two diagonals and a base, a circle's all of them), and a tower this
    small trained from random weights never found that in minutes (shape at chance, however it was
    supervised). Measured here (docs/benchmarks.md): the squared responses of these edge filters,
    summed per orientation over a frame's patches, name held-out shapes 94-96% right through a small
    classifier, nothing else learnt. So the tower starts out computing a version of that:

    - the patch embedding holds each channel's patch mean and oriented edge filters (Gabor, both
      phases, zero-mean: a solid patch gives none) per colour channel;
    - layer 0's MLP turns each filter's response into its magnitude (``gelu(z) + gelu(-z)``) and
      adds them up per orientation into ``orientations`` residual dimensions that nothing else
      writes at first (no attention output, no other MLP unit, no position embedding there);
    - the frame's mean token then carries its edge-orientation histogram, which the projector and
      the probes read, and the language model after them.
    """
    tower = model.model.vision_tower
    conv = tower.embeddings.patch_embedding
    k = conv.kernel_size[0]
    ys, xs = torch.meshgrid(torch.arange(k) - (k - 1) / 2, torch.arange(k) - (k - 1) / 2, indexing="ij")
    envelope = torch.exp(-(xs**2 + ys**2) / (2 * (k / 3.5) ** 2))
    filters = []  # (orientation, filter)
    for i in range(orientations):
        theta = math.pi * i / orientations
        u = xs * math.cos(theta) + ys * math.sin(theta)
        for phase in (torch.sin, torch.cos):
            g = envelope * phase(2 * math.pi * u / k)
            g = g - g.mean()
            filters.append((i, 0.5 * g / g.norm()))
    layers = tower.encoder.layers
    with torch.no_grad():
        w = conv.weight  # [out, 3, k, k]
        row, edge_rows = 0, []  # edge_rows: (residual dim, orientation)
        for c in range(3):
            w[row].zero_()
            w[row, c] = 2.0 / (k * k)  # the patch's mean in channel c
            row += 1
            for i, g in filters:
                w[row].zero_()
                w[row, c] = g
                edge_rows.append((row, i))
                row += 1
        energy = list(range(row, row + orientations))  # where the per-orientation energy goes
        w[row : row + orientations].zero_()
        fixed = row + orientations + 3
        for c in range(3):  # minus each patch mean: the fixed dimensions of a solid patch sum to 0
            w[row + orientations + c].zero_()
            w[row + orientations + c, c] = -2.0 / (k * k)
        # A LayerNorm subtracts a token's mean over its dimensions. Where a solid patch's token sums
        # to zero, its edge dimensions stay exactly zero through that (no energy from solid areas):
        # the random filters, the position embedding and layer 0's attention output sum to zero.
        w[fixed:] -= w[fixed:].mean(dim=0, keepdim=True)
        conv.bias.zero_()
        pos = tower.embeddings.position_embedding.weight
        pos[:, :fixed].zero_()
        pos[:, fixed:] -= pos[:, fixed:].mean(dim=1, keepdim=True)
        out = layers[0].self_attn.out_proj
        out.weight[fixed:] -= out.weight[fixed:].mean(dim=0, keepdim=True)
        out.bias[fixed:] -= out.bias[fixed:].mean()
        for layer in layers:  # nothing writes the filters' or the energy's dimensions at first
            layer.self_attn.out_proj.weight[:fixed].zero_()
            layer.self_attn.out_proj.bias[:fixed].zero_()
            layer.mlp.fc2.weight[:fixed].zero_()
            layer.mlp.fc2.bias[:fixed].zero_()
        fc1, fc2 = layers[0].mlp.fc1, layers[0].mlp.fc2
        for n, (dim, i) in enumerate(edge_rows):
            for sign, unit in ((1.0, 2 * n), (-1.0, 2 * n + 1)):  # gelu(z) + gelu(-z) ~ |z|
                fc1.weight[unit].zero_()
                fc1.weight[unit, dim] = sign
                fc1.bias[unit] = 0.0
                fc2.weight[:, unit].zero_()
                fc2.weight[energy[i], unit] = 1.0


def train_vision(
    model,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    patches: torch.Tensor,
    cfg: TrainConfig,
    report,
    probe_out: dict | None = None,
) -> list[float]:
    """``labels`` [F, 3] per frame (labels_for), ``patches`` [F, 27, 27] per patch (patch_labels)."""
    probe = VisionProbe(model.config.text_config.hidden_size)
    if probe_out is not None:
        probe_out["probe"] = probe
    params = [*model.model.vision_tower.parameters(), *model.model.multi_modal_projector.parameters()]
    opt = torch.optim.AdamW([*params, *probe.parameters()], lr=cfg.vision_lr, weight_decay=0.01)
    sched = _cosine(opt, cfg.vision_steps)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    losses = []
    model.train()
    for step in range(cfg.vision_steps):
        idx = torch.randint(0, len(pixels), (cfg.vision_batch,), generator=gen)
        batch = pixels[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5  # every shape here is left-right symmetric
        batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(2), batch)
        where = patches[idx]
        where = torch.where(flip.view(-1, 1, 1), where.flip(2), where)
        tokens = vision_tokens(model, normalise(batch))
        views = carrier_views(model, tokens)
        # The frame's mean must name its content (mean:1, and what attention over any carriers
        # averages to); each pool:16 cell too, at half weight, so a coarse grid keeps it.
        loss, acc = probe.loss(views["mean:1"], labels[idx])
        loss = loss + 0.5 * probe.loss(views["pool:16"], labels[idx])[0]
        # every patch says what it shows; the few on an outline count as much as all the rest
        per_patch = F.cross_entropy(
            probe.patch(tokens).flatten(0, 1), where.flatten(), ignore_index=IGNORE, reduction="none"
        )
        flat = where.flatten()
        outline = (flat >= 1) & (flat <= 3)
        loss = loss + per_patch[flat != IGNORE].mean() + (per_patch[outline].mean() if outline.any() else 0.0)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.vision_steps - 1:
            report(f"vision step {step}/{cfg.vision_steps} loss {np.mean(losses[-50:]):.3f} acc {acc:.2f}")
    model.eval()
    return losses


def _cosine(opt, steps: int):
    warm = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )


@torch.no_grad()
def encode_bank(model, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    bank: dict[str, list[torch.Tensor]] = {k: [] for k in CARRIER_MIX}
    for i in range(0, len(pixels), 32):
        views = carrier_views(model, vision_tokens(model, normalise(pixels[i : i + 32])))
        for k, v in views.items():
            bank[k].append(v)
    return {k: torch.cat(v) for k, v in bank.items()}


@torch.no_grad()
def probe_accuracy(
    probe: VisionProbe, bank: dict[str, torch.Tensor], first: int, labels: torch.Tensor
) -> dict:
    """The stage-1 probes' accuracy on bank rows ``first``.. (held-out frames), per carrier view:
    what the language model can read there. Shapes are graded on frames that show an object."""
    out = {}
    has = labels[:, 1] > 0
    for view in CARRIER_MIX:
        x = bank[view][first : first + len(labels)].mean(dim=1)
        for name, head, col in (("bg", probe.bg, 0), ("shape", probe.shape, 1), ("colour", probe.colour, 2)):
            pred = head(x).argmax(-1)
            sel = has if name == "shape" else torch.ones_like(has)
            out[f"{view} {name}"] = round(float((pred[sel] == labels[sel, col]).float().mean()), 3)
    return out


# -- stage 2: language ---------------------------------------------------------------------------
@dataclass
class QA:
    question: str
    anchor_pts: float | None  # the frame tag the engine appends (None: no anchor)
    answer: str
    kind: str  # bg | obj | screen | when
    check: bool = False  # a scene check: the question in the format's scene_check form


@dataclass
class Context:
    frames: list[tuple[int, float, int]]  # (bank row, pts, timeline scene) in time order
    scenes: list[WorldScene]  # the world scene of each frame
    carriers: str = "pool:16"
    check: bool = False  # a few frames of one scene: a scene check's context


@dataclass
class Timeline:
    """A synthetic stream: real bank scenes one after another from ``offset`` seconds, 1 fps."""

    scenes: list[tuple[BankScene, float]]  # (scene, start pts)

    def frames(self) -> list[tuple[int, float, int]]:
        out = []
        for si, (bs, start) in enumerate(self.scenes):
            for k, row in enumerate(bs.frames):
                out.append((row, start + k, si))
        return out


def make_timeline(rng: random.Random, scenes: list[BankScene], n_scenes: int) -> Timeline:
    offset = rng.choice([0.0, 0.0, rng.uniform(0, 3400), rng.uniform(0, 3400), rng.uniform(3400, 7000)])
    offset = float(math.floor(offset)) + (0.5 if rng.random() < 0.15 else 0.0)
    chosen: list[tuple[BankScene, float]] = []
    t = offset
    for _ in range(n_scenes):
        prev = chosen[-1][0].scene.background if chosen else None
        # neighbours differ in background as in the world, unless no scene could (one-scene data)
        can_differ = any(b.frames and b.scene.background != prev for b in scenes)
        while True:
            bs = rng.choice(scenes)
            if bs.frames and (bs.scene.background != prev or not can_differ):
                break
        chosen.append((bs, t))
        t += len(bs.frames)
    return Timeline(chosen)


def choose_context(rng: random.Random, n: int, budget_frames: int) -> list[int]:
    """Frame positions of a context: chunks of <= 8 consecutive frames, as the QA plan returns them."""
    if n <= budget_frames and rng.random() < 0.3:
        return list(range(n))
    picked: set[int] = set()
    chunks = rng.randint(1, 6)
    for _ in range(chunks):
        size = rng.randint(1, 8)
        start = rng.randrange(0, max(1, n - size + 1))
        picked.update(range(start, min(n, start + size)))
        if len(picked) >= budget_frames:
            break
    return sorted(picked)[:budget_frames]


CHECK_SHARE = 0.5  # of training contexts: scene checks (a few frames of one scene), the rest chunked
_PER_FRAME = {"native": 196, "pool:16": 16, "mean:1": 1}


def _carriers(rng: random.Random) -> str:
    return rng.choices(list(CARRIER_MIX), weights=list(CARRIER_MIX.values()))[0]


def make_context(
    rng: random.Random, scenes: list[BankScene], max_tokens: int, check_share: float = CHECK_SHARE
) -> Context:
    """A training context: with ``check_share`` a scene check's, else chunks of a timeline."""
    if rng.random() < check_share:
        return make_check_context(rng, scenes)
    carriers = _carriers(rng)
    budget = max(2, min(48, max_tokens // (_PER_FRAME[carriers] + 6)))
    timeline = make_timeline(rng, scenes, rng.randint(2, 10))
    allf = timeline.frames()
    ctx = [allf[i] for i in choose_context(rng, len(allf), budget)]
    return Context(ctx, [timeline.scenes[si][0].scene for _, _, si in ctx], carriers)


def make_check_context(rng: random.Random, scenes: list[BankScene]) -> Context:
    """A scene check's context as the QA engine builds it (qa/scene_check.py): the frames
    ``check_indices`` picks from one scene, with their tags; sometimes fewer (dedup keeps one frame
    of a still scene, a short one has two)."""
    timeline = make_timeline(rng, scenes, 1)
    bs, start = timeline.scenes[0]
    picked = check_indices(len(bs.frames))
    if rng.random() < 0.2:
        picked = sorted(rng.sample(picked, rng.randint(1, len(picked))))
    frames = [(bs.frames[k], start + k, 0) for k in picked]
    return Context(frames, [bs.scene] * len(frames), _carriers(rng), check=True)


_DESCRIBE = {"bg": _BG_Q, "obj": _OBJ_Q, "screen": _SCREEN_Q}


def make_question(rng: random.Random, c: Context) -> QA:
    if c.check:
        return make_check_question(rng, c.scenes[0])
    ctx, scene_of = c.frames, c.scenes
    r = rng.random()
    if r < 0.83:  # anchored: the context ends at the anchor's frame, whose tag the engine appends
        kind = rng.choice(["bg", "obj", "screen"])
        j = len(ctx) - 1
        when = rng.choice(["at", "at", "at", "range", "now"])
        pts = ctx[j][1]
        q = rng.choice(_DESCRIBE[kind])
        question = q.format(t=_time_words(rng, when, pts, ctx[-1][1])) if "{t}" in q else q
        return QA(question, pts, answer_for(kind, scene_of[j]), kind)
    # no anchor: the newest frame is what "now" means
    kind = rng.choice(["bg", "obj", "screen"])
    q = rng.choice([t for t in _DESCRIBE[kind] if "{t}" in t])
    return QA(q.format(t=rng.choice(["", " now"])), None, answer_for(kind, scene_of[-1]), kind)


def make_check_question(rng: random.Random, scene: WorldScene) -> QA:
    """A `when` question asked of one scene, answered with what the scene shows of the kind it asks
    about: its object (``purple triangle`` / ``nothing``) for "When did the X appear?", its
    background for "When was the background C?". The engine decides the match by the words; the
    model only names what it sees. X and C are the scene's own half the time, else near misses
    (the object's shape in another colour, its colour on another shape, the background's colour),
    so the question's words are no hint of the answer."""
    own = rng.random() < 0.5
    has_obj = scene.object is not None
    if rng.random() < (0.4 if has_obj else 0.6):
        colour = scene.background if own else rng.choice(COLOURS)
        q = rng.choice(_WHEN_BG_Q).format(c=colour, u=rng.choice(["whole", "screen's"]))
        return QA(q, None, scene.background, "when", check=True)
    shape, colour = rng.choice(SHAPES), rng.choice(COLOURS)
    if has_obj:
        r = rng.random()
        if own:
            shape, colour = scene.object, scene.object_colour
        elif r < 0.35:
            shape = scene.object
        elif r < 0.7:
            colour = scene.object_colour
        elif r < 0.85:
            shape, colour = scene.object, scene.background
    q = rng.choice(_WHEN_OBJ_Q).format(o=f"{colour} {shape}")
    return QA(q, None, scene.object_name, "when", check=True)


class SequenceBuilder:
    """Embeddings of a context and of its questions, in the service's layout (vlm/prompt.py):
    sink, then per frame its carriers and its time tag, then the question and the answer."""

    def __init__(self, model, tokenizer, fmt: PromptFormat, bank: dict[str, torch.Tensor]) -> None:
        self.model, self.bank = model, bank
        self.prompter = Prompter(tokenizer, fmt)
        self.embed = model.get_input_embeddings()
        self.im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self._tags: dict[float, list[int]] = {}

    def tag(self, pts: float) -> list[int]:
        ids = self._tags.get(pts)
        if ids is None:
            ids = self._tags[pts] = self.prompter.tag_ids(pts)
        return ids

    def context(self, c: Context) -> torch.Tensor:
        carriers = self.bank[c.carriers]
        ids: list[int] = list(self.prompter.sink_ids)
        slots: list[tuple[int, int]] = []  # (where in the sequence, bank row) of each frame's carriers
        n_car = carriers.shape[1]
        for row, pts, _ in c.frames:
            slots.append((len(ids), row))
            ids += [0] * n_car + self.tag(pts)
        embeds = self.embed(torch.tensor(ids))
        rows = torch.tensor([r for _, r in slots])
        where = torch.tensor([w for w, _ in slots]).view(-1, 1) + torch.arange(n_car).view(1, -1)
        embeds = embeds.index_put((where.flatten(),), carriers[rows].flatten(0, 1))
        return embeds

    def question(self, qa: QA, *, with_answer: bool = True) -> tuple[list[int], list[int]]:
        if qa.check:
            q = self.prompter.check_ids(qa.question)
        else:
            q = self.prompter.question_ids(qa.question, qa.anchor_pts)
        a = self.prompter.ids(qa.answer) + [self.im_end] if with_answer else []
        return q, a


def lm_forward(model, embeds, positions, cache=None):
    lm = model.model.language_model
    out = lm(inputs_embeds=embeds, position_ids=positions, past_key_values=cache, use_cache=cache is not None)
    return out.last_hidden_state


def context_loss(model, builder: SequenceBuilder, c: Context, qas: list[QA], gap: int) -> torch.Tensor:
    """One forward of the context, then all its questions at once on copies of its KV.

    Questions are right-padded: attention is causal, so no real token ever sees a pad.
    """
    from transformers import DynamicCache

    ctx = builder.context(c)
    n = ctx.shape[0]
    sink = len(builder.prompter.sink_ids)
    positions = torch.arange(n)
    positions[sink:] += gap
    cache = DynamicCache(config=model.config.text_config)
    lm_forward(model, ctx.unsqueeze(0), positions.unsqueeze(0), cache)
    for layer in cache.layers:
        layer.keys = layer.keys.expand(len(qas), -1, -1, -1)
        layer.values = layer.values.expand(len(qas), -1, -1, -1)
    seqs = [builder.question(qa) for qa in qas]
    m = max(len(q) + len(a) for q, a in seqs)
    ids = torch.zeros(len(qas), m, dtype=torch.long)
    targets = torch.full((len(qas), m), -100)
    for i, (q, a) in enumerate(seqs):
        ids[i, : len(q) + len(a)] = torch.tensor(q + a)
        targets[i, len(q) - 1 : len(q) + len(a) - 1] = torch.tensor(a)
    start = int(positions[-1]) + 1
    qpos = torch.arange(start, start + m).expand(len(qas), m)
    hidden = lm_forward(model, builder.embed(ids), qpos, cache)
    sel = targets != -100
    return F.cross_entropy(model.lm_head(hidden[sel]), targets[sel])


QUESTIONS_PER_CONTEXT = 8


def train_language(model, builder: SequenceBuilder, scenes, cfg: TrainConfig, report) -> list[float]:
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    for p in model.model.multi_modal_projector.parameters():
        p.requires_grad_(False)
    params = list(model.model.language_model.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lm_lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = _cosine(opt, cfg.lm_steps)
    rng = random.Random(cfg.seed + 2)
    losses = []
    model.train()
    for step in range(cfg.lm_steps):
        opt.zero_grad()
        total = 0.0
        for _ in range(cfg.lm_batch):
            c = make_context(rng, scenes, cfg.max_context_tokens)
            qas = [make_question(rng, c) for _ in range(QUESTIONS_PER_CONTEXT)]
            gap = rng.choice([0, 0, rng.randint(1, 20_000)])  # frames prefilled far from the sink
            loss = context_loss(model, builder, c, qas, gap) / cfg.lm_batch
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(total)
        if step % 50 == 0 or step == cfg.lm_steps - 1:
            report(f"language step {step}/{cfg.lm_steps} loss {np.mean(losses[-50:]):.4f}")
    model.eval()
    return losses


@torch.no_grad()
def greedy(model, builder: SequenceBuilder, c: Context, qa: QA, max_new: int = 16) -> str:
    q, _ = builder.question(qa, with_answer=False)
    embeds = torch.cat([builder.context(c), builder.embed(torch.tensor(q))])
    positions = torch.arange(embeds.shape[0])
    out: list[int] = []
    for _ in range(max_new):
        hidden = lm_forward(model, embeds.unsqueeze(0), positions.unsqueeze(0))
        nxt = int(model.lm_head(hidden[0, -1]).argmax())
        if nxt == builder.im_end:
            break
        out.append(nxt)
        embeds = torch.cat([embeds, builder.embed(torch.tensor([nxt]))])
        positions = torch.arange(embeds.shape[0])
    return builder.prompter.tokenizer.decode(out).strip()


def evaluate(model, builder: SequenceBuilder, scenes, seed: int, n: int, max_tokens: int) -> dict:
    """Greedy exact-match accuracy per question kind and carriers, on contexts of held-out videos'
    scenes (the bank path; the service path is measured by the tests and SceneKV-Bench)."""
    rng = random.Random(seed)
    right: dict[str, list[int]] = {}
    for _ in range(n):
        c = make_context(rng, scenes, max_tokens)
        qa = make_question(rng, c)
        got = int(greedy(model, builder, c, qa) == qa.answer)
        right.setdefault(qa.kind, []).append(got)
        right.setdefault(c.carriers, []).append(got)
    return {k: round(float(np.mean(v)), 3) for k, v in sorted(right.items())} | {"n": n}


# -- the whole run -------------------------------------------------------------------------------
@dataclass
class RunRecord:
    config: dict
    command: str
    seconds: dict = field(default_factory=dict)
    vision_loss: list[float] = field(default_factory=list)
    lm_loss: list[float] = field(default_factory=list)
    heldout: dict = field(default_factory=dict)
    vision_heldout: dict = field(default_factory=dict)
    params: int = 0


def bank_scenes(truths, times_per_video) -> list[BankScene]:
    out, row = [], 0
    for truth, times in zip(truths, times_per_video, strict=True):
        rows = {}
        for k, t in enumerate(times):
            rows.setdefault(truth.scenes.index(truth.scene_at(t)), []).append(row + k)
        out += [BankScene(truth.scenes[i], r) for i, r in sorted(rows.items())]
        row += len(times)
    return out


def train(
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    work_dir: str | Path,
    command: str,
    report: Callable[[str], None] = print,
) -> RunRecord:
    from transformers import LlavaOnevisionForConditionalGeneration

    from scenekv.vlm.llava_onevision import LlavaOnevisionBackend
    from scenekv.vlm.loading import SIGLIP_MEAN_STD

    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rec = RunRecord(asdict(cfg), command)
    t0 = time.perf_counter()
    work = Path(work_dir)
    seeds = [TRAIN_SEED_BASE + cfg.seed * 1000 + i for i in range(cfg.videos)]
    eval_seeds = [EVAL_SEED_BASE + cfg.seed * 1000 + i for i in range(cfg.eval_videos)]
    paths = render_videos(work, seeds + eval_seeds, cfg.video_s, cfg.render_fps, cfg.threads)
    rec.seconds["render"] = round(time.perf_counter() - t0, 1)
    report(f"rendered {len(paths)} world videos in {rec.seconds['render']:.0f} s")

    tokenizer = build_world_tokenizer()
    config = world_model_config(len(tokenizer))
    net = LlavaOnevisionForConditionalGeneration._from_config(config, dtype=torch.float32)
    rec.params = sum(p.numel() for p in net.parameters())
    init_edge_energy(net)
    tower = net.model.vision_tower
    for p in [*tower.embeddings.parameters(), *tower.encoder.layers[0].parameters()]:
        p.requires_grad_(False)  # trained, the wired layer 0 lost edge orientation (shape 28 % vs 81 %)
    backend = LlavaOnevisionBackend(
        net,
        tokenizer,
        model_id="scenekv-world",
        image_mean=SIGLIP_MEAN_STD[0],
        image_std=SIGLIP_MEAN_STD[1],
        is_random=False,
    )
    t1 = time.perf_counter()
    decoded = [decode_frames(p, backend.image_size) for p in paths]
    truths = [load_truth(p) for p in paths]
    pix = [d[0] for d in decoded[: cfg.videos]]
    pixels = torch.cat(pix)
    labels = torch.tensor(
        [
            labels_for(tr.scene_at(t))
            for tr, (_, ts) in zip(truths, decoded[: cfg.videos], strict=False)
            for t in ts
        ]
    )
    patches = torch.from_numpy(
        np.stack(
            [
                patch_labels(tr, t, backend.image_size)
                for tr, (_, ts) in zip(truths, decoded[: cfg.videos], strict=False)
                for t in ts
            ]
        )
    )
    rec.seconds["decode"] = round(time.perf_counter() - t1, 1)
    report(f"decoded {len(pixels)} training frames in {rec.seconds['decode']:.0f} s")

    t2 = time.perf_counter()
    probe: dict = {}
    rec.vision_loss = train_vision(net, pixels, labels, patches, cfg, report, probe_out=probe)
    rec.seconds["vision"] = round(time.perf_counter() - t2, 1)

    t3 = time.perf_counter()
    all_pixels = torch.cat([d[0] for d in decoded])
    bank = encode_bank(net, all_pixels)
    del pixels, all_pixels, pix
    times = [d[1] for d in decoded]
    train_scenes = bank_scenes(truths[: cfg.videos], times[: cfg.videos])
    offset = sum(len(t) for t in times[: cfg.videos])
    held = bank_scenes(truths[cfg.videos :], times[cfg.videos :])
    for bs in held:
        bs.frames = [offset + r for r in bs.frames]
    held_labels = torch.tensor(
        [
            labels_for(tr.scene_at(t))
            for tr, ts in zip(truths[cfg.videos :], times[cfg.videos :], strict=True)
            for t in ts
        ]
    )
    rec.vision_heldout = probe_accuracy(probe["probe"], bank, offset, held_labels)
    report(f"held-out vision probes: {rec.vision_heldout}")
    builder = SequenceBuilder(net, tokenizer, WORLD_FORMAT, bank)
    rec.lm_loss = train_language(net, builder, train_scenes, cfg, report)
    rec.seconds["language"] = round(time.perf_counter() - t3, 1)

    t4 = time.perf_counter()
    rec.heldout = evaluate(
        net, builder, held, cfg.seed + 3, 200 if cfg.lm_steps > 1000 else 40, cfg.max_context_tokens
    )
    rec.seconds["eval"] = round(time.perf_counter() - t4, 1)
    rec.seconds["total"] = round(time.perf_counter() - t0, 1)
    report(f"held-out accuracy (bank path): {rec.heldout}")
    save(net, tokenizer, out_dir, rec)
    return rec


def save(net, tokenizer, out_dir: str | Path, rec: RunRecord) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for p in net.parameters():
        p.requires_grad_(True)
    net.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    (out / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": 384, "width": 384}})
        + "\n"
    )
    (out / FORMAT_FILE).write_text(
        json.dumps(
            {"prompt": WORLD_FORMAT.to_dict(), "world_only": True, "signature_layer": SIGNATURE_LAYER},
            indent=1,
        )
        + "\n"
    )
    (out / "training.json").write_text(json.dumps(asdict(rec), indent=1) + "\n")
    (out / "README.md").write_text(model_card(rec))


def _curve(losses: list[float], points: int = 12) -> list[tuple[int, float]]:
    """(step, mean loss of the window ending there) at ``points`` evenly spaced steps."""
    if not losses:
        return []
    out = []
    for k in range(1, points + 1):
        end = max(1, round(k * len(losses) / points))
        window = losses[max(0, end - max(1, len(losses) // points)) : end]
        out.append((end, float(np.mean(window))))
    return out


def model_card(rec: RunRecord) -> str:
    cfg = rec.config
    rows = "\n".join(
        f"| {kind} | {acc:.1%} |"
        for kind, acc in rec.heldout.items()
        if kind != "n" and isinstance(acc, float)
    )

    probes = "\n".join(f"| {k} | {v:.1%} |" for k, v in rec.vision_heldout.items())

    def table(losses):
        return "\n".join(f"| {step} | {loss:.4f} |" for step, loss in _curve(losses))

    sec = rec.seconds
    first = TRAIN_SEED_BASE + cfg["seed"] * 1000
    last, held = first + cfg["videos"] - 1, EVAL_SEED_BASE + cfg["seed"] * 1000
    sizes = ", ".join(f"{w}x{h}" for w, h in SIZES)
    final = np.mean(rec.lm_loss[-50:]) if rec.lm_loss else float("nan")
    return f"""---
library_name: transformers
pipeline_tag: video-text-to-text
tags: [llava_onevision, scenekv, synthetic]
---
# scenekv-world-llava-ov

A {rec.params / 1e6:.1f}M-parameter `LlavaOnevisionForConditionalGeneration` (SigLIP vision tower at 384 px,
patch 14, 27x27 tokens, the model's own 2x2 pooling to 196 native video tokens; Qwen2 language model)
trained **from scratch** by SceneKV on its synthetic world (`scenekv/ingest/world.py`): scenes of one
palette background colour and at most one circle, square or triangle of another colour.

**It knows these colours and shapes and nothing else.** It exists so that SceneKV's answers, retrieval,
carriers and storage can be graded against ground truth where no pretrained checkpoint is reachable.
Real video needs a real checkpoint (`--model llava-hf/llava-onevision-qwen2-0.5b-ov-hf`).

## How it reads video
Exactly SceneKV's streaming layout (`scenekv.json`, `vlm/prompt.py`): system prompt (the attention sink),
then per frame its carriers followed by its time tag `<mm:ss>`, then the question with the anchor's frame
tag appended (`What colour is the background at 03:12? <03:12>`), then the answer. An anchored
question's context ends at the anchor's frame (`anchor_last`): "at T" is asked as if live at T. Answers:
`yellow`; `purple triangle` / `nothing`; `purple triangle on yellow` / `yellow background`.
A `when` question ("When did the purple triangle appear?") is asked of each scene SceneTiling found,
on a few of its frames, as `{WORLD_FORMAT.scene_check.format(question="When did ...?")}` (the format's
`scene_check`), and answered with what that scene shows of the kind asked about (its object:
`green circle` / `nothing`; or its background: `yellow`); SceneKV answers the user with the starts
of the scenes whose reading the question names (`at 05:41, 07:02` / `never`), so the times are the
scene cuts' own.
SceneTiling and dedup compare frames by the vision tower's
`hidden_states[{SIGNATURE_LAYER}]` (`signature_layer`: frozen layer 0's output, local features): the
trained layers above spread a moving object over every token, and scenes were cut every few seconds
of motion.

Carrier strategies seen in training: {", ".join(f"{k} ({v:.0%})" for k, v in CARRIER_MIX.items())} of
the contexts. LLaVA-OV itself only ever saw native tokens; `pool:K` for other K, `topk` and `dedup`
were never seen here, so SceneKV-Bench's numbers for them measure transfer.

## Training (reproducible)
```
{rec.command}
```
- seed {cfg["seed"]}; data: {cfg["videos"]} world videos of {cfg["video_s"]:g} s (seeds {first}..{last}),
  rendered at {cfg["render_fps"]:g} fps in sizes {sizes}, x264, read back at 1 fps
  through `open_source`; held-out: {cfg["eval_videos"]} videos (seeds from {held}).
- half the training videos have 3-{SHORT_SCENE_S:g} s scenes, the rest 3-40 s: many distinct objects, so
  that shapes are learnt, not which shape each of a few hundred objects had (with ~450 objects the
  vision stage memorised them and named held-out shapes below chance).
- stage 1, vision: {cfg["vision_steps"]} steps x {cfg["vision_batch"]} frames (half flipped left-right), AdamW
  lr {cfg["vision_lr"]}. The tower starts as an edge-orientation meter (`init_edge_energy`: oriented
  edge filters in the patch embedding, their magnitudes summed per orientation by layer 0's MLP),
  which stays frozen (trained, it lost edge orientation: held-out shape 28 % instead of 81 % in a
  700-step stage-1 experiment, docs/benchmarks.md); the
  layers above start random. Losses: linear probes on the frame's mean token (weight 1) and
  each pool:16 cell (weight 0.5) for background, shape, object colour; and per patch token what it
  shows (background, the outline of which shape, the inside).
- stage 2, language (vision frozen, carriers banked): {cfg["lm_steps"]} steps x {cfg["lm_batch"]} contexts
  x {QUESTIONS_PER_CONTEXT} questions, AdamW lr {cfg["lm_lr"]}, contexts up to
  {cfg["max_context_tokens"]} tokens: timelines of real banked scenes at 1 fps with times up to 2 h,
  cut into chunks as retrieval returns them ({1 - CHECK_SHARE:.0%}: what / which questions, anchored or
  not), or scene checks as the QA engine asks `when` questions ({CHECK_SHARE:.0%}): up to
  {CHECK_FRAMES} frames of one scene and "When did the X appear? In this scene?", answered with the
  scene's object or background (X is the scene's own half the time, else a near miss). A first
  recipe answered `yes` / `no` instead and stayed at chance (docs/benchmarks.md): whether two things
  match is left to the engine's word comparison.
- time on a 2-core CPU ({cfg["threads"]} torch threads, fp32): render {sec.get("render", 0):.0f} s, decode
  {sec.get("decode", 0):.0f} s, vision {sec.get("vision", 0):.0f} s, language {sec.get("language", 0):.0f} s,
  held-out eval {sec.get("eval", 0):.0f} s; **total {sec.get("total", 0) / 60:.1f} min**.

### Loss
| vision step | loss |
|---|---|
{table(rec.vision_loss)}

| language step | loss |
|---|---|
{table(rec.lm_loss)}

Final language loss (mean of the last 50 steps): {final:.4f}.

## Held-out accuracy
Greedy exact match on {rec.heldout.get("n", 0)} questions over contexts built from the held-out videos'
frames (the training-time bank path). The service path (Ray actors, Redis memory, retrieval, re-rotation) is
graded by `tests/test_world_model.py` and SceneKV-Bench (docs/benchmarks.md).

| question kind / carriers | accuracy |
|---|---|
{rows}

Stage 1's linear probes on held-out frames (the mean of each carrier view; shapes graded on frames
that show an object, where chance is 33%):

| probe | accuracy |
|---|---|
{probes}
"""
