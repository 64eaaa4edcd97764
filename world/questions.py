"""What the world model is asked and answers, and the contexts it is asked of (the language stage's data).

Contexts are laid out as SceneKV's stream KV lays them out for this model (``WORLD_FORMAT``, read
by ``vlm/prompt.py``) and chosen as the QA engine returns them: chunks of a timeline of real banked
scenes, or the few frames of one scene that a `when` question's scene check reads
(``qa/scene_check.py``). The tokenizer is fitted on exactly this text (``tokenizer_corpus``).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from scenekv.qa.scene_check import check_indices
from scenekv.units import clock
from scenekv.vlm.prompt import PromptFormat
from scenekv.world.data import BankScene
from scenekv.world.recipe import CARRIER_MIX, COLOURS
from scenekv.world.truth import SHAPES, WorldScene

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
    """The answer to a question of ``kind`` (bg | obj | screen) about ``scene``: the world's own phrases."""
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
    """``n_scenes`` bank scenes in a row from an offset of up to two hours (times the model must read)."""
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
    """A question about context ``c`` as the QA engine asks it: anchored at its newest frame or not."""
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
