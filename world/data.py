"""The world model's training data: world videos rendered and read back as a user's file is, with
the labels of each frame and of each patch, and the scenes' places in the feature bank.

Training frames come through ``open_source`` and the backend's resize, so the model learns from
what SceneKV will feed it (x264 losses, 1 fps sampling), not from clean renders.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scenekv.world.recipe import COLOURS, SHORT_SCENE_S, SIZES
from scenekv.world.render import make_world_video, shape_mask
from scenekv.world.truth import SHAPES, WorldScene, WorldTruth, sample_world


@dataclass
class BankScene:
    """A world scene and where its encoded frames sit in the feature bank."""

    scene: WorldScene
    frames: list[int]  # rows of the feature bank, in time order (1 fps)


def _render(args: tuple[str, int, float, tuple[int, int], float, float]) -> str:
    path, seed, duration, size, fps, max_scene = args
    truth = sample_world(seed, duration, max_scene=max_scene)
    make_world_video(path, seed=seed, duration=duration, size=size, fps=fps, truth=truth, preset="ultrafast")
    return path


def render_videos(out: Path, seeds: list[int], duration: float, fps: float, workers: int) -> list[Path]:
    """Render the world of each seed into ``out`` (kept: a second run with the same folder reuses them)."""
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
    """A frame's class labels: background colour, shape (0 none), object colour (0 none)."""
    shape = 0 if scene.object is None else 1 + SHAPES.index(scene.object)
    colour = 0 if scene.object_colour is None else 1 + COLOURS.index(scene.object_colour)
    return COLOURS.index(scene.background), shape, colour


PATCH_GRID = 27  # 384 px / patch 14
OUTLINE, INSIDE, IGNORE = (1, 2, 3), 4, -100


def patch_labels(truth: WorldTruth, t: float, side: int = 384, grid: int = PATCH_GRID) -> np.ndarray:
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
    w, h = truth.size
    cx, cy = scene.at(t, w, h)
    r = scene.size * h / 2
    k = 5  # sample points per patch side
    sub = (np.arange(grid * k) + 0.5) * (side // grid) / k  # patches cover the first 27 x 14 px
    xs, ys = np.meshgrid(sub * w / side - cx, sub * h / side - cy)
    inside = shape_mask(scene.object, xs, ys, r).reshape(grid, k, grid, k).mean(axis=(1, 3))
    out[inside > 0.97] = INSIDE
    out[(inside > 0.03) & (inside <= 0.97)] = OUTLINE[SHAPES.index(scene.object)]
    return out


def frame_labels(truths: list[WorldTruth], times_per_video: list[list[float]]) -> torch.Tensor:
    """``labels_for`` of every frame, videos one after another: [F, 3]."""
    return torch.tensor(
        [labels_for(tr.scene_at(t)) for tr, ts in zip(truths, times_per_video, strict=True) for t in ts]
    )


def frame_patch_labels(
    truths: list[WorldTruth], times_per_video: list[list[float]], side: int
) -> torch.Tensor:
    """``patch_labels`` of every frame, videos one after another: [F, 27, 27]."""
    return torch.from_numpy(
        np.stack(
            [patch_labels(tr, t, side) for tr, ts in zip(truths, times_per_video, strict=True) for t in ts]
        )
    )


def bank_scenes(
    truths: list[WorldTruth], times_per_video: list[list[float]], first_row: int = 0
) -> list[BankScene]:
    """Each video's scenes with the bank rows of their frames (videos banked one after another from
    ``first_row``)."""
    out, row = [], first_row
    for truth, times in zip(truths, times_per_video, strict=True):
        rows = {}
        for k, t in enumerate(times):
            rows.setdefault(truth.scenes.index(truth.scene_at(t)), []).append(row + k)
        out += [BankScene(truth.scenes[i], r) for i, r in sorted(rows.items())]
        row += len(times)
    return out
