"""SchedulerPolicy: the encoder scheduler's tunable policy, as one frozen object.

A module of its own, with no heavy imports, so `scenekv serve --help` shows the defaults without
loading torch; EncoderConfig carries one to every encoder, whose EncoderScheduler reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from scenekv.errors import UserError


@dataclass(frozen=True)
class SchedulerPolicy:
    # the part of the model's time answers get while frames also wait (0: a vision batch every
    # step; at most 0.9, so frames never starve). 0.2: with 8 answers decoding, 4 streams ingesting
    # on the 0.5B CPU keep their pace (1.0x, against 0.63x at 0.5) and a new question's first token
    # still comes within 2 s (docs/benchmarks.md, "Concurrent questions"): a live camera's frames
    # cannot wait, an answer can a little
    decode_share: float = 0.2
    # the longest vision batch while answers run, seconds (at least one frame runs); with no answer
    # running, ``max_vision_s``
    busy_vision_s: float = 0.5
    max_vision_s: float = 2.0
    # prompt tokens prefilled a step, so a long prompt never stalls running answers for longer
    prefill_tokens: int = 512

    def __post_init__(self) -> None:
        if not 0.0 <= self.decode_share <= 0.9:
            raise UserError(f"decode_share must be in [0, 0.9], got {self.decode_share:g}")
        if not 0 < self.busy_vision_s <= self.max_vision_s:
            most = f"max_vision_s={self.max_vision_s:g}"
            raise UserError(f"busy_vision_s must be in (0, {most}], got {self.busy_vision_s:g}")
        if self.prefill_tokens < 1:
            raise UserError(f"prefill_tokens must be at least 1, got {self.prefill_tokens}")
