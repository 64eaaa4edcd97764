"""The model-independent half of SceneTiling's signal: colour histograms of the decoded RGB frame.

A checkpoint's frame features see what it learnt to see: the world model's layer-0 features barely
move across a dissolve between two textures, a random tower barely moves across a fade. The colour
content of the picture does, for every checkpoint alike. HSV histograms, as in PySceneDetect's
content detector, but compared as whole-frame distributions (histogram intersection) rather than
pixel by pixel, because SceneKV samples ~1 frame per second and a drifting texture or a pan moves
every pixel between two samples while its colour distribution stays put.

A frame becomes three histograms, 33 numbers (hue in 16 bins weighted by chroma plus one bin for grey,
saturation in 8, value in 8; each sums to 1), computed on a ~64 px thumbnail taken by striding: ~0.1
ms a frame in numpy, on the frames the encoder already holds. Two frames are as similar as their
least similar channel: a cut from green waves to red waves of the same pattern changes only the hue,
and averaged with two unchanged channels it would be a third of a dip.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HISTOGRAM_SIZE", "colour_histogram", "histogram_similarity"]

HUE_BINS, SAT_BINS, VALUE_BINS = 16, 8, 8
HISTOGRAM_SIZE = HUE_BINS + 1 + SAT_BINS + VALUE_BINS
THUMB = 64  # long side of the strided thumbnail the histogram is taken over
_SAT, _VALUE = HUE_BINS + 1, HUE_BINS + 1 + SAT_BINS  # where the saturation and value parts start


def colour_histogram(image: np.ndarray) -> np.ndarray:
    """[33] float32 hue, saturation and value histograms (each summing to 1) of an RGB or grey frame."""
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3 or not img.shape[0] or not img.shape[1]:
        raise ValueError(f"expected an HxWx3 RGB frame, got shape {img.shape}")
    h, w = img.shape[:2]
    step = max(1, max(h, w) // THUMB)
    rgb = img[step // 2 :: step, step // 2 :: step, :3].reshape(-1, 3).astype(np.float32) / 255.0
    top, low = rgb.max(axis=1), rgb.min(axis=1)
    chroma = top - low
    r, g, b = rgb.T
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(
        top == r, ((g - b) / safe) % 6.0, np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    sat = np.where(top > 0, chroma / np.where(top > 0, top, 1.0), 0.0)
    n = float(len(rgb))
    hue_hist = np.bincount(
        np.minimum((hue / 6.0 * HUE_BINS).astype(np.int64), HUE_BINS - 1), weights=chroma, minlength=HUE_BINS
    )
    parts = (
        np.append(hue_hist, n - chroma.sum()),  # chroma-weighted hue, the rest as "grey"
        np.bincount(np.minimum((sat * SAT_BINS).astype(np.int64), SAT_BINS - 1), minlength=SAT_BINS),
        np.bincount(np.minimum((top * VALUE_BINS).astype(np.int64), VALUE_BINS - 1), minlength=VALUE_BINS),
    )
    return (np.concatenate(parts) / n).astype(np.float32)


def histogram_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The lowest of the three channels' histogram intersections, in [0, 1]: 1 for the same colour
    content, ~0 when one channel's distribution moved entirely."""
    both = np.minimum(a, b)
    return float(min(both[:_SAT].sum(), both[_SAT:_VALUE].sum(), both[_VALUE:].sum()))
