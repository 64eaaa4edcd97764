"""The world model's card: the record of a run and the README.md written from it beside the weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenekv.qa.scene_check import CHECK_FRAMES
from scenekv.world.language_stage import QUESTIONS_PER_CONTEXT
from scenekv.world.model import SIGNATURE_LAYER
from scenekv.world.questions import CHECK_SHARE, WORLD_FORMAT
from scenekv.world.recipe import CARRIER_MIX, EVAL_SEED_BASE, SHORT_SCENE_S, SIZES, TRAIN_SEED_BASE


@dataclass
class RunRecord:
    """What a run did, saved as ``training.json``; the card is written from it alone."""

    config: dict
    command: str
    seconds: dict = field(default_factory=dict)
    vision_loss: list[float] = field(default_factory=list)
    lm_loss: list[float] = field(default_factory=list)
    heldout: dict = field(default_factory=dict)
    vision_heldout: dict = field(default_factory=dict)
    params: int = 0


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
    """The checkpoint's README.md: how the model reads video, how it was trained (the command to
    reproduce it), its loss curves and held-out accuracy."""
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
trained **from scratch** by SceneKV on its synthetic world (`world/truth.py`): scenes of one
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
graded by `tests/world/test_world_model.py` and SceneKV-Bench (docs/benchmarks.md).

| question kind / carriers | accuracy |
|---|---|
{rows}

Stage 1's linear probes on held-out frames (the mean of each carrier view; shapes graded on frames
that show an object, where chance is 33%):

| probe | accuracy |
|---|---|
{probes}
"""
