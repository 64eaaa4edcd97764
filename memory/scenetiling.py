"""SceneTiling: split a video into scenes from the similarity of consecutive frame signatures.

VideoLLaMB's idea (TextTiling for video): with s_i = cos(f_i, f_i+1) the similarity across gap i,
the *depth* of gap i is (left peak - s_i) + (right peak - s_i), where a peak is found by walking
left / right while s does not decrease. Gaps deeper than mean + alpha * std of all depths are scene
boundaries, subject to a minimum scene length.

Two versions:

- :func:`offline_scenes` sees the whole video: global statistics, unbounded peak walks, and the
  deepest boundaries win when two are closer than the minimum scene length.
- :class:`SceneTiler` is causal, fed frame by frame (``push(pts, signature) -> closed scenes``,
  ``flush()`` at the end, like PySceneDetect's detectors). Gap i is decided once ``lookahead``
  frames after it have been seen (the right peak is searched only there) against running
  statistics of the depths seen so far (Welford); decisions are final, so a closed scene never moves.
  Its state is JSON (``state()`` / ``from_state``) so a stream resumed after a restart goes on
  exactly where it stopped.

Two absolute guards sit on top of the relative test, because the relative test alone always finds
"the deepest 30 %" of gaps, even in a static shot whose similarities only differ by sensor noise
(normalisation turns noise into boundaries):

- ``max_similarity`` (default 0.9): a gap whose similarity is above it is never a boundary. On the
  tiny random model, hard cuts in generated video give s < 0.2 and frames of one (drifting) scene
  s > 0.95; the default sits in that gap with margin on both sides.
- ``min_depth`` (default 0.1): the dip must be this deep relative to its neighbours, so a long run of
  uniformly lower similarity (fast motion) is not cut at every frame.

``alpha`` 0.5 is VideoLLaMB's value. The relative test is skipped for the first ``warmup`` (8) gaps,
where the statistics are still meaningless; there the absolute guards alone decide, so a cut in the
first seconds of a stream is still found. ``min_scene_s`` (default 2 s) stops flicker from producing
one-frame scenes. ``lookahead`` 4 bounds the delay of a decision to 4 frames (4 s at 1 fps).

The similarity s_i of two frames combines two signals, the lower one wins: the cosine of the model's
frame signatures (what the checkpoint sees) and, when the decoded RGB frames are given, the
intersection of their colour histograms (:mod:`.image_signal`: what any viewer sees, the same for
every checkpoint). A dissolve the model's features glide through still changes the colours, a cut
between two same-coloured shots still changes the features: either signal can make the dip. Both
sit near 1 inside a shot, so the guards and the relative test read the combined value unchanged.

A dissolve or a wipe sampled at 1 fps spreads its change over two or three shallow dips; a gap's
depth is therefore also measured against how similar its valley's two rims are (:func:`_depth`), and
a valley gets one boundary: after a boundary, the next needs a stable gap (s >= ``max_similarity``)
between them, so a long dissolve whose every step dips is not cut at each ``min_scene_s``.

A flash is not a scene: a boundary whose two sides come back together within ``flash_frames``
frames (some frame before the gap and some frame after it, at most ``flash_frames`` frames between
them, are as similar as ``max_similarity``: the shot is back) is dropped, on both edges of the
flash. Without this a flash's first edge was a cut whenever the scene before it was long enough, and
min_scene_s only stopped the second. The causal tiler tests flashes of up to ``lookahead - 1``
frames, what it can see before deciding.

Scene times: ``start`` is the pts of the scene's first frame; ``end`` is the pts of the next scene's
first frame (scenes tile the timeline), or for the last scene its last pts plus the last frame step.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .image_signal import colour_histogram, histogram_similarity

ALPHA = 0.5
LOOKAHEAD = 4
MIN_SCENE_S = 2.0
MAX_SIMILARITY = 0.9
MIN_DEPTH = 0.1
WARMUP = 8
HISTORY = 64  # how far back the streaming left-peak walk may go
FLASH_FRAMES = 2  # an excursion this many frames long that returns to the shot is no scene
REACH = LOOKAHEAD + 1  # offline: farthest apart (frames) the rims of a valley are compared


@dataclass(frozen=True)
class Scene:
    index: int
    start: float  # pts of the first frame (seconds)
    end: float  # pts of the next scene's first frame (exclusive end)
    first_frame: int  # frame indices, inclusive
    last_frame: int

    @property
    def frames(self) -> int:
        return self.last_frame - self.first_frame + 1

    def as_dict(self) -> dict:
        return {"scene": self.index, "start": self.start, "end": self.end, "frames": self.frames}


def _unit(signature) -> np.ndarray:
    v = np.asarray(signature.detach().cpu().float() if isinstance(signature, torch.Tensor) else signature)
    v = v.astype(np.float64).reshape(-1)
    n = np.linalg.norm(v)
    return v / n if n > 0 else v


def _histogram(image) -> np.ndarray | None:
    """An RGB frame's colour histogram; a 1-D array is taken as one already computed."""
    if image is None:
        return None
    a = np.asarray(image)
    return a.astype(np.float32) if a.ndim == 1 else colour_histogram(a)


def _pair(v: np.ndarray, h: np.ndarray | None, w: np.ndarray, g: np.ndarray | None) -> float:
    """The combined similarity of two frames: the lower of the model's and the image's."""
    s = float(v @ w)
    return s if h is None or g is None else min(s, histogram_similarity(h, g))


def similarities(signatures: Sequence, images: Sequence | None = None) -> np.ndarray:
    """s_i for consecutive frames: cos(f_i, f_i+1), or with ``images`` (RGB frames or their colour
    histograms) the lower of that and the histogram intersection."""
    if len(signatures) < 2:
        return np.zeros(0)
    f = np.stack([_unit(s) for s in signatures])
    sims = np.einsum("ij,ij->i", f[:-1], f[1:])
    if images is not None:
        if len(images) != len(signatures):
            raise ValueError("images and signatures differ in length")
        hists = [_histogram(x) for x in images]
        image_sims = [histogram_similarity(a, b) for a, b in zip(hists, hists[1:], strict=False)]
        sims = np.minimum(sims, np.asarray(image_sims))
    return sims


def depth_scores(sims: np.ndarray, pair: Callable[[int, int], float] | None = None) -> np.ndarray:
    """TextTiling depth of every gap, peaks found by walking while s does not decrease; with ``pair``
    (frame a, frame b -> similarity) also the valley depth (:func:`_depth`)."""
    n = len(sims)
    depths = np.zeros(n)
    for i in range(n):
        j = i
        while j > 0 and sims[j - 1] >= sims[j]:
            j -= 1
        k = i
        while k < n - 1 and sims[k + 1] >= sims[k]:
            k += 1
        depths[i] = _depth(i, j, k, sims[i], sims[j], sims[k], pair, REACH)
    return depths


def _depth(g: int, j: int, k: int, s: float, left: float, right: float, pair, reach: int) -> float:
    """Depth of gap g between its peak gaps j <= g <= k: TextTiling's (left - s) + (right - s), or,
    deeper, the same measured against the similarity of the valley's two rims (the last frame of the
    left peak, the first of the right one, at most ``reach`` frames apart). A cut's valley is its one
    gap and both agree; a dissolve or a wipe spreads its change over two or three gaps, each dip
    shallow, while its rims are as different as a cut's."""
    depth = (left - s) + (right - s)
    if pair is None:
        return depth
    b = k if k > g else g + 1
    a = max(j + 1 if j < g else g, b - reach)
    if b - a < 2:
        return depth
    across = pair(a, b)
    return depth if across is None else max(depth, (left - across) + (right - across))


def offline_scenes(
    pts: Sequence[float],
    signatures: Sequence,
    *,
    alpha: float = ALPHA,
    min_scene_s: float = MIN_SCENE_S,
    max_similarity: float = MAX_SIMILARITY,
    min_depth: float = MIN_DEPTH,
    indices: Sequence[int] | None = None,
    images: Sequence | None = None,
    image_signal: bool = True,
    flash_frames: int = FLASH_FRAMES,
) -> list[Scene]:
    """Scenes of a whole video from its frame times and signatures (VideoLLaMB's offline SceneTiling).

    ``images``: the decoded RGB frames or their :func:`.image_signal.colour_histogram` (keeping
    33 numbers a frame, not the frames, for a long video); used unless ``image_signal`` is off."""
    if len(pts) != len(signatures):
        raise ValueError("pts and signatures differ in length")
    if not len(pts):
        return []
    idx = list(indices) if indices is not None else list(range(len(pts)))
    images = images if image_signal else None
    if images is not None and len(images) != len(pts):
        raise ValueError("pts and images differ in length")
    f = [_unit(s) for s in signatures]
    hists = [_histogram(x) for x in images] if images is not None else [None] * len(f)
    sims = similarities(f, hists if images is not None else None)

    def pair(a: int, b: int) -> float:
        return _pair(f[a], hists[a], f[b], hists[b])

    def flash(g: int) -> bool:  # some frame before gap g comes back within flash_frames after it
        return any(
            pair(a, b) >= max_similarity
            for b in range(g + 1, min(len(f), g + flash_frames + 2))
            for a in range(max(0, b - flash_frames - 1), min(g, b - 2) + 1)
        )

    def settled(a: int, b: int) -> bool:  # a stable gap between two boundaries: not one valley
        return bool((sims[min(a, b) + 1 : max(a, b)] >= max_similarity).any())

    depths = depth_scores(sims, pair)
    end = _end_of(pts)
    cut: list[int] = []  # accepted gaps: a new scene starts at frame gap + 1
    if len(depths):
        threshold = depths.mean() + alpha * depths.std()
        candidates = [
            g
            for g in np.argsort(-depths, kind="stable")
            if depths[g] > threshold and depths[g] >= min_depth and sims[g] < max_similarity and not flash(g)
        ]
        for g in candidates:
            starts = sorted([*cut, g])
            bounds = [pts[0]] + [pts[c + 1] for c in starts] + [end]
            if all(b - a >= min_scene_s for a, b in zip(bounds, bounds[1:], strict=False)) and all(
                settled(c, g) for c in cut
            ):
                cut.append(int(g))
    starts = [0] + [c + 1 for c in sorted(cut)]
    scenes = []
    for n, first in enumerate(starts):
        last = starts[n + 1] - 1 if n + 1 < len(starts) else len(pts) - 1
        stop = pts[last + 1] if last + 1 < len(pts) else end
        scenes.append(Scene(n, float(pts[first]), float(stop), idx[first], idx[last]))
    return scenes


def _end_of(pts: Sequence[float]) -> float:
    return float(pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 0.0))


@dataclass(frozen=True)
class TilingParams:
    """SceneTiler's parameters, as one frozen value (stored with a stream's tiler state)."""

    alpha: float = ALPHA  # a boundary is deeper than mean + alpha * std of the depths seen
    lookahead: int = LOOKAHEAD  # frames seen after a gap before it is decided
    min_scene_s: float = MIN_SCENE_S  # no scene shorter than this (seconds)
    max_similarity: float = MAX_SIMILARITY  # a gap more similar than this is never a boundary
    min_depth: float = MIN_DEPTH  # nor one shallower than this
    warmup: int = WARMUP  # gaps decided by the absolute guards alone, before the statistics count
    history: int = HISTORY  # how far back the streaming left-peak walk may go
    image_signal: bool = True  # combine the frames' colour histograms with the model's signatures
    flash_frames: int = FLASH_FRAMES  # excursions up to this long (and lookahead - 1) make no scene

    def __post_init__(self) -> None:
        if self.lookahead < 1:
            raise ValueError("lookahead must be >= 1 frame")
        if self.flash_frames < 0:
            raise ValueError("flash_frames must be >= 0")

    @classmethod
    def from_dict(cls, fields: dict) -> TilingParams:
        """From stored state; fields a newer version added are ignored."""
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


class SceneTiler:
    """Causal SceneTiling: ``push`` each frame, get the scenes that closed; ``flush`` at end of stream."""

    def __init__(self, params: TilingParams | None = None, **fields) -> None:
        """``params``, or its fields by name (``SceneTiler(lookahead=4)``); names given override it."""
        base = params or TilingParams()
        self.params = dataclasses.replace(base, **fields) if fields else base
        p = self.params
        self.alpha, self.lookahead, self.min_scene_s = p.alpha, p.lookahead, p.min_scene_s
        self.max_similarity, self.min_depth, self.warmup, self.history = (
            p.max_similarity,
            p.min_depth,
            p.warmup,
            p.history,
        )
        self.flash = min(p.flash_frames, p.lookahead - 1)  # what the look-ahead lets it test
        self.reach = p.lookahead + 1  # farthest apart (frames) two frames are compared
        self._frames: deque[tuple[int, float]] = deque()  # (index, pts) of recent frames
        self._sims: deque[float] = deque()  # sims[k] is the gap after frames[k]
        # far[k]: frames[k]'s similarity to the frames 2, 3, .. reach before it (valleys, flashes)
        self._far: deque[tuple[float, ...]] = deque()
        self._count = 0  # frames pushed so far; frames[0] is frame number _count - len(frames)
        self._next_gap = 0  # push-order number of the next gap to decide
        # (unit signature, colour histogram or None) of the newest `reach` frames
        self._recent: deque[tuple[np.ndarray, np.ndarray | None]] = deque(maxlen=self.reach)
        self._settled = True  # a gap above max_similarity was decided since the last boundary
        self._n, self._mean, self._m2 = 0, 0.0, 0.0  # Welford over decided depths
        self._scene = 0
        self._scene_start: tuple[int, float] | None = None  # (first frame index, pts) of the open scene
        self._step = 0.0

    # -- public -----------------------------------------------------------------------------------
    @property
    def open_scene(self) -> tuple[int, int, float] | None:
        """(scene index, first frame index, start pts) of the scene still open, if any frame was seen."""
        if self._scene_start is None:
            return None
        return self._scene, *self._scene_start

    def push(self, pts: float, signature, index: int | None = None, *, image=None) -> list[Scene]:
        """One frame: its model signature and, for the image signal, its decoded RGB ``image``."""
        index = self._count if index is None else int(index)
        v = _unit(signature)
        h = _histogram(image) if self.params.image_signal else None
        if self._frames:
            self._step = pts - self._frames[-1][1]
            if self._step <= 0:
                raise ValueError(f"frame pts {pts} is not after the previous frame")
        back = [_pair(v, h, *self._recent[-m]) for m in range(1, len(self._recent) + 1)]
        if back:
            self._sims.append(back[0])
        if self._scene_start is None:
            self._scene_start = (index, float(pts))
        self._frames.append((index, float(pts)))
        self._far.append(tuple(back[1:]))
        self._recent.append((v, h))
        self._count += 1
        closed = []
        while self._next_gap + self.lookahead <= self._count - 1:
            scene = self._decide(self._next_gap)
            self._next_gap += 1
            if scene is not None:
                closed.append(scene)
        self._trim()
        return closed

    def flush(self) -> list[Scene]:
        """End of stream: decide the remaining gaps with the look-ahead there is, close the last scene."""
        closed = []
        while self._next_gap <= self._count - 2:
            scene = self._decide(self._next_gap)
            self._next_gap += 1
            if scene is not None:
                closed.append(scene)
        if self._scene_start is not None and self._frames:
            first, start = self._scene_start
            last_index, last_pts = self._frames[-1]
            closed.append(Scene(self._scene, start, last_pts + self._step, first, last_index))
            self._scene += 1
            self._scene_start = None
        return closed

    def state(self) -> dict:
        """JSON-serialisable state; :meth:`from_state` continues exactly from here."""
        return {
            "params": dataclasses.asdict(self.params),
            "frames": [list(f) for f in self._frames],
            "sims": list(self._sims),
            "far": [list(row) for row in self._far][self._next_gap - self._count :],  # undecided gaps'
            "count": self._count,
            "next_gap": self._next_gap,
            "recent": [[_b64(v), None if h is None else _b64(h)] for v, h in self._recent],
            "settled": self._settled,
            "welford": [self._n, self._mean, self._m2],
            "scene": self._scene,
            "scene_start": list(self._scene_start) if self._scene_start else None,
            "step": self._step,
        }

    @classmethod
    def from_state(cls, state: dict) -> SceneTiler:
        tiler = cls(TilingParams.from_dict(state["params"]))
        tiler._frames = deque((int(i), float(p)) for i, p in state["frames"])
        tiler._sims = deque(float(s) for s in state["sims"])
        far = [tuple(row) for row in state.get("far", [])]  # none in states from before the image signal
        tiler._far = deque([()] * (len(tiler._frames) - len(far)) + far)
        tiler._count, tiler._next_gap = int(state["count"]), int(state["next_gap"])
        recent = state.get("recent", [[state["last"], None]] if state.get("last") else [])
        for v, h in recent:
            tiler._recent.append((_unb64(v).astype(np.float64), None if h is None else _unb64(h)))
        tiler._settled = bool(state.get("settled", True))
        tiler._n, tiler._mean, tiler._m2 = state["welford"]
        tiler._scene = int(state["scene"])
        start = state["scene_start"]
        tiler._scene_start = (int(start[0]), float(start[1])) if start else None
        tiler._step = float(state["step"])
        return tiler

    # -- internals --------------------------------------------------------------------------------
    def _frame_at(self, number: int) -> tuple[int, float]:
        return self._frames[number - (self._count - len(self._frames))]

    def _sim_at(self, gap: int) -> float:
        return self._sims[gap - (self._count - 1 - len(self._sims))]

    def _decide(self, gap: int) -> Scene | None:
        first_gap = self._count - 1 - len(self._sims)
        last_gap = self._count - 2
        s = self._sim_at(gap)
        j = gap
        while j - 1 >= first_gap and self._sim_at(j - 1) >= self._sim_at(j):
            j -= 1
        k = gap
        while k + 1 <= min(last_gap, gap + self.lookahead - 1) and self._sim_at(k + 1) >= self._sim_at(k):
            k += 1
        depth = _depth(gap, j, k, s, self._sim_at(j), self._sim_at(k), self._pair_at, self.reach)
        self._n += 1
        delta = depth - self._mean
        self._mean += delta / self._n
        self._m2 += delta * (depth - self._mean)
        if s >= self.max_similarity:
            self._settled = True
            return None
        if depth < self.min_depth:
            return None
        if self._n > self.warmup:
            std = math.sqrt(self._m2 / self._n)
            if depth <= self._mean + self.alpha * std:
                return None
        if not self._settled or self._flash_at(gap):  # still in the last boundary's valley; a flash
            return None
        index, pts = self._frame_at(gap + 1)
        first, start = self._scene_start
        if pts - start < self.min_scene_s:
            return None
        prev_index = self._frame_at(gap)[0]
        scene = Scene(self._scene, start, pts, first, prev_index)
        self._settled = False
        self._scene += 1
        self._scene_start = (index, pts)
        return scene

    def _pair_at(self, a: int, b: int) -> float | None:
        """Similarity of frames a < b (push order), if it was computed (b - a <= reach)."""
        if b - a == 1:
            return self._sim_at(a)
        row = self._far[b - (self._count - len(self._far))]  # row[m - 2]: frames b - m and b
        return row[b - a - 2] if b - a - 2 < len(row) else None

    def _flash_at(self, gap: int) -> bool:
        """Some frame a <= gap comes back in a frame b > gap, at most ``flash`` frames between them."""
        for b in range(gap + 1, min(self._count, gap + self.flash + 2)):
            for a in range(max(0, b - self.flash - 1), min(gap, b - 2) + 1):
                similar = self._pair_at(a, b)
                if similar is not None and similar >= self.max_similarity:
                    return True
        return False

    def _trim(self) -> None:
        # keep the frames of undecided gaps plus `history` gaps of the past for left-peak walks
        keep = (self._count - self._next_gap) + self.history + 1
        while len(self._frames) > keep:
            self._frames.popleft()
            self._far.popleft()
        while len(self._sims) > max(0, len(self._frames) - 1):
            self._sims.popleft()


def _b64(v: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(v, dtype=np.float32)).decode()


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32).copy()
