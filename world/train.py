"""Train SceneKV's world model: a small LLaVA-OneVision, from scratch, on the synthetic world.

No pretrained checkpoint is reachable offline, and a random one answers noise, so nothing about
SceneKV's answers could be judged. This trains the real ``LlavaOnevisionForConditionalGeneration``
class (``world/model.py``) on world videos (``world/truth.py``), rendered with x264 and read back
through ``open_source`` like any user file (``world/data.py``). Two stages, one seed:

1. **Vision** (``world/vision_stage.py``): the tower and projector learn to put a frame's content
   (background colour, object shape and colour) where every carrier strategy keeps it.
2. **Language** (``world/language_stage.py``): the vision half frozen and every frame banked once,
   the language model learns from contexts and questions laid out as SceneKV's stream KV and QA
   engine lay them out (``world/questions.py``).

Everything is deterministic for a seed on one machine (torch threads fixed); the model card
(``world/card.py``) records the command, seeds, steps, times, the loss curve and held-out accuracy.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from scenekv.vlm.prompt import FORMAT_FILE
from scenekv.world.card import RunRecord, model_card
from scenekv.world.data import (
    bank_scenes,
    decode_frames,
    frame_labels,
    frame_patch_labels,
    render_videos,
)
from scenekv.world.language_stage import SequenceBuilder, evaluate, train_language
from scenekv.world.model import SIGNATURE_LAYER, new_world_model
from scenekv.world.questions import WORLD_FORMAT
from scenekv.world.recipe import EVAL_SEED_BASE, TRAIN_SEED_BASE, TrainConfig
from scenekv.world.truth import load_truth
from scenekv.world.vision_stage import encode_bank, probe_accuracy, train_vision

if TYPE_CHECKING:
    from transformers import LlavaOnevisionForConditionalGeneration, PreTrainedTokenizerFast

__all__ = ["RunRecord", "TrainConfig", "save", "train"]


def train(
    out_dir: str | Path,
    cfg: TrainConfig,
    *,
    work_dir: str | Path,
    command: str,
    report: Callable[[str], None] = print,
) -> RunRecord:
    """Render, decode, train both stages, grade on held-out videos, and save the checkpoint and its
    card to ``out_dir`` (``command`` is what the card says reproduces it)."""
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rec = RunRecord(asdict(cfg), command)
    t0 = time.perf_counter()
    seeds = [TRAIN_SEED_BASE + cfg.seed * 1000 + i for i in range(cfg.videos)]
    eval_seeds = [EVAL_SEED_BASE + cfg.seed * 1000 + i for i in range(cfg.eval_videos)]
    paths = render_videos(Path(work_dir), seeds + eval_seeds, cfg.video_s, cfg.render_fps, cfg.threads)
    rec.seconds["render"] = round(time.perf_counter() - t0, 1)
    report(f"rendered {len(paths)} world videos in {rec.seconds['render']:.0f} s")

    net, tokenizer, backend = new_world_model()
    rec.params = sum(p.numel() for p in net.parameters())
    t1 = time.perf_counter()
    decoded = [decode_frames(p, backend.image_size) for p in paths]
    truths = [load_truth(p) for p in paths]
    frames, times = [d[0] for d in decoded], [d[1] for d in decoded]
    n = cfg.videos  # the first n videos train, the rest are held out
    pixels = torch.cat(frames[:n])
    labels = frame_labels(truths[:n], times[:n])
    patches = frame_patch_labels(truths[:n], times[:n], backend.image_size)
    rec.seconds["decode"] = round(time.perf_counter() - t1, 1)
    report(f"decoded {len(pixels)} training frames in {rec.seconds['decode']:.0f} s")

    t2 = time.perf_counter()
    probe: dict = {}
    rec.vision_loss = train_vision(net, pixels, labels, patches, cfg, report, probe_out=probe)
    rec.seconds["vision"] = round(time.perf_counter() - t2, 1)

    t3 = time.perf_counter()
    bank = encode_bank(net, torch.cat(frames))
    del pixels
    offset = sum(len(t) for t in times[:n])
    held = bank_scenes(truths[n:], times[n:], first_row=offset)
    rec.vision_heldout = probe_accuracy(probe["probe"], bank, offset, frame_labels(truths[n:], times[n:]))
    report(f"held-out vision probes: {rec.vision_heldout}")
    builder = SequenceBuilder(net, tokenizer, WORLD_FORMAT, bank)
    rec.lm_loss = train_language(net, builder, bank_scenes(truths[:n], times[:n]), cfg, report)
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


def save(
    net: LlavaOnevisionForConditionalGeneration,
    tokenizer: PreTrainedTokenizerFast,
    out_dir: str | Path,
    rec: RunRecord,
) -> None:
    """The checkpoint as SceneKV loads it: weights, tokenizer, preprocessing, the prompt format it was
    trained in (``scenekv.json``), the run's record and its card."""
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
