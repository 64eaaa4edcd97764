"""Stage 1, vision: the tower and projector learn to put a frame's content where any carrier keeps it.

Background colour, object shape and object colour must be linearly readable from the mean of a
frame's tokens and from each ``pool:16`` cell, so that every carrier strategy, and any attention
average over carriers, keeps them. Each patch token also learns what it shows (background, the
outline of which shape, the inside), because only the outline's few patches hold the shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from scenekv.world.data import IGNORE, normalise
from scenekv.world.recipe import CARRIER_MIX, COLOURS, TrainConfig, cosine_schedule
from scenekv.world.truth import SHAPES

if TYPE_CHECKING:
    from transformers import LlavaOnevisionForConditionalGeneration


class VisionProbe(torch.nn.Module):
    """Linear read-outs of what a token holds; trained with the tower, kept to grade held-out frames."""

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


def vision_tokens(model: LlavaOnevisionForConditionalGeneration, pixels: torch.Tensor) -> torch.Tensor:
    """The projected tokens [F, 729, D] of the tower's last layer, before any pooling."""
    out = model.model.vision_tower(pixels, output_hidden_states=True)
    return model.model.multi_modal_projector(out.hidden_states[-1])


def carrier_views(
    model: LlavaOnevisionForConditionalGeneration, tokens: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The carriers each strategy would give, from projected tokens [F, 729, D]."""
    f, n, d = tokens.shape
    side = int(math.isqrt(n))
    grid = tokens.transpose(1, 2).reshape(f, d, side, side)
    return {
        "native": model.model.apply_pooling(tokens),
        "pool:16": F.adaptive_avg_pool2d(grid, 4).flatten(2).transpose(1, 2),
        "mean:1": tokens.mean(dim=1, keepdim=True),
    }


def train_vision(
    model: LlavaOnevisionForConditionalGeneration,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    patches: torch.Tensor,
    cfg: TrainConfig,
    report: Callable[[str], None],
    probe_out: dict | None = None,
) -> list[float]:
    """``labels`` [F, 3] per frame (labels_for), ``patches`` [F, 27, 27] per patch (patch_labels)."""
    probe = VisionProbe(model.config.text_config.hidden_size)
    if probe_out is not None:
        probe_out["probe"] = probe
    params = [*model.model.vision_tower.parameters(), *model.model.multi_modal_projector.parameters()]
    opt = torch.optim.AdamW([*params, *probe.parameters()], lr=cfg.vision_lr, weight_decay=0.01)
    sched = cosine_schedule(opt, cfg.vision_steps)
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


@torch.no_grad()
def encode_bank(
    model: LlavaOnevisionForConditionalGeneration, pixels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Every frame's carriers under each strategy, encoded once: the language stage reads these."""
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
