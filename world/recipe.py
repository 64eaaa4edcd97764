"""The world model's training recipe: the run's config and the constants its stages and its card share.

Seeds of training and held-out videos are fixed functions of the run's seed, so a held-out video
never enters training and SceneKV-Bench can pick seeds neither uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from scenekv.world.truth import PALETTE

COLOURS = list(PALETTE)
TRAIN_SEED_BASE = 100_000  # training videos: seeds TRAIN_SEED_BASE + i; held-out ones never go here
EVAL_SEED_BASE = 900_000
SIZES = [(640, 360), (480, 480), (360, 640), (800, 448), (512, 384)]
SHORT_SCENE_S = 4.0
CARRIER_MIX = {"native": 0.3, "pool:16": 0.5, "mean:1": 0.2}


@dataclass(frozen=True)
class TrainConfig:
    """Every knob of a run; ``smoke`` is the minute-long run the tests train."""

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


def cosine_schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over the first 5 % of ``steps``, then cosine decay to zero (both stages)."""
    warm = max(1, steps // 20)
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
