"""How a stream and a question are written for the model: the prompt half of a session.

A checkpoint reads video in one layout: the system prompt (the attention sink), then one segment per
frame made of a time tag and the frame's carriers, then the question. ``PromptFormat`` is that
layout as data, so a checkpoint trained in another one (SceneKV's world model, ``scenekv.json`` in its
folder) is fed exactly what it was trained on:

- ``time_format``: ``seconds`` writes ``<t=83.0s>``; ``clock`` writes ``<01:23>`` (``<1:01:23>`` past an
  hour: scenekv/units.py's clock), so a model can copy a frame's time straight into an answer such as
  ``at 01:23``. Two formats are checkpoints' own, written as their processors write them before each
  video frame: ``qwen3`` (Qwen3-VL: ``<83.0 seconds>``) and ``frame_from`` (SmolVLM2: ``\nFrame from
  01:23:``, minutes not wrapped at the hour: not the clock), so a real checkpoint reads the time the way
  it was trained to.
- ``tag_after``: the tag follows the carriers instead of preceding them. Attention is causal, so a
  tag written after its frame can see the frame: one token then carries both the time and the
  content, which is what a small model learns to look up.
- ``anchor_tag``: a question with a time anchor gets the tag of the frame nearest the anchor appended
  ("... at 03:12? <03:12>"), in the frames' own format, so the model matches tags rather than parsing
  every way a person writes a time.
- ``anchor_last``: an anchored question's context ends at the anchor's frame (later frames are left
  out), so the question is asked as if live at that moment: "what is on screen at T" is "what is on
  screen now" for the stream as it was at T, which is what a streaming model answers best.
- ``scene_check``: a `when` question is answered scene by scene (qa/scene_check.py): the model reads a
  few frames of one scene and this template filled with the question, and says what the scene
  shows of the kind asked about; the engine writes the starts of the scenes whose reading the
  question names. Empty: the checkpoint was not trained so, and it gets a `when` context of every
  scene's first frame instead (qa/scene_heads.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from scenekv.units import clock

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant that watches a video stream and answers questions about it. "
    "Each frame is preceded by its time in seconds, like <t=12.0s>."
)
FORMAT_FILE = "scenekv.json"  # beside a checkpoint's config.json: the layout it was trained on
_MARK = "\x00QUESTION\x00"
TIME_FORMATS = ("seconds", "clock", "qwen3", "frame_from")


@dataclass(frozen=True)
class PromptFormat:
    system: str = DEFAULT_SYSTEM_PROMPT
    time_format: str = "seconds"
    tag_after: bool = False
    anchor_tag: bool = False
    anchor_last: bool = False
    scene_check: str = ""  # e.g. "{question} In this scene?": answered with what the scene shows

    def __post_init__(self) -> None:
        if self.time_format not in TIME_FORMATS:
            raise ValueError(f"time_format must be one of {TIME_FORMATS}, got {self.time_format!r}")
        if self.scene_check and "{question}" not in self.scene_check:
            raise ValueError("scene_check must hold {question}")

    def time_tag(self, pts: float) -> str:
        if self.time_format == "clock":
            return f"<{clock(pts)}>"
        if self.time_format == "qwen3":
            return f"<{pts:.1f} seconds>"
        if self.time_format == "frame_from":
            minutes, seconds = divmod(max(0, math.floor(pts + 1e-6)), 60)
            return f"\nFrame from {minutes:02d}:{seconds:02d}:"
        return f"<t={pts:.1f}s>"

    def question(self, text: str, anchor_pts: float | None = None) -> str:
        """The user's question as the model reads it (with the anchor's frame tag where it wants one)."""
        if self.anchor_tag and anchor_pts is not None:
            return f"{text} {self.time_tag(anchor_pts)}"
        return text

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PromptFormat:
        known = {
            k: d[k]
            for k in ("system", "time_format", "tag_after", "anchor_tag", "anchor_last", "scene_check")
            if k in d
        }
        return cls(**known)


def system_prompt_for(time_format: str) -> str:
    """The default system prompt, with an example tag in ``time_format`` (what the frames carry)."""
    example = PromptFormat(time_format=time_format).time_tag(12.0).strip().rstrip(":")
    return DEFAULT_SYSTEM_PROMPT.replace("in seconds, like <t=12.0s>", f"like {example}")


def time_tag(pts: float) -> str:
    """The default format's tag (kept for callers that have no backend at hand)."""
    return PromptFormat().time_tag(pts)


class PromptTemplate:
    """Splits the checkpoint's chat template into the sink (before the video) and the question part."""

    def __init__(self, tokenizer, system_prompt: str) -> None:
        text = None
        for content in (lambda t: t, lambda t: [{"type": "text", "text": t}]):  # plain, then list content
            messages = [
                {"role": "system", "content": content(system_prompt)},
                {"role": "user", "content": content(_MARK)},
            ]
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # a template that wants the other content form, or none: try the next
                continue
            if isinstance(text, str) and _MARK in text:
                break
        if not isinstance(text, str) or _MARK not in text:
            text = f"<|im_start|>system\n{system_prompt}<|im_end|>\n<|im_start|>user\n{_MARK}<|im_end|>\n"
            text += "<|im_start|>assistant\n"
        self.sink, self.after_question = text.split(_MARK)

    def question(self, text: str) -> str:
        return "\n" + text + self.after_question


class Prompter:
    """Token ids of every text piece of a backend's layout: sink, frame tags, questions."""

    def __init__(self, tokenizer, fmt: PromptFormat) -> None:
        self.tokenizer, self.format = tokenizer, fmt
        self.template = PromptTemplate(tokenizer, fmt.system)
        self.sink_ids = self.ids(self.template.sink)

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def tag_ids(self, pts: float) -> list[int]:
        return self.ids(self.format.time_tag(pts))

    def question_ids(self, question: str, anchor_pts: float | None = None) -> list[int]:
        return self.ids(self.template.question(self.format.question(question, anchor_pts)))

    def check_ids(self, question: str) -> list[int]:
        """The scene check of ``question`` (``scene_check`` filled in), as the model reads it."""
        return self.ids(self.template.question(self.format.scene_check.format(question=question)))
