"""EncoderConfig: what every EncoderActor of a service is built with, as one typed object.

The CLI's flags (whose defaults come from SCENEKV_* variables, scenekv/cli/env_flags.py) reach
SceneKVService, which builds one of these and hands the same object to each encoder it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from scenekv.defaults import DEFAULT_PREFIX
from scenekv.memory import RollingConfig

from .scheduler_policy import SchedulerPolicy


@dataclass(frozen=True)
class EncoderConfig:
    device: str | None = None  # None: a GPU where the encoder was given one, else the CPU
    dtype: str | None = None  # None: bf16/fp16 on a GPU, fp32 on the CPU
    prefix: str = DEFAULT_PREFIX  # Redis key prefix of every stream
    rolling: RollingConfig = field(default_factory=RollingConfig)  # window, chunks, KV dtype at rest
    captions: bool = True  # caption each scene as it closes
    budget_tokens: int = 4096  # a question's context budget
    batch_frames: int = 32  # most frames in one vision batch across streams
    # the scheduler's policy (serve's --decode-share, --busy-vision-s, --prefill-tokens)
    scheduling: SchedulerPolicy = field(default_factory=SchedulerPolicy)
    # torch threads of the encoder's model: Ray starts actors with OMP_NUM_THREADS=1, which halves
    # every model step on a 2-core machine (measured: bench/question_wait.py); EncoderPool.start
    # gives each encoder its node's CPUs divided by the encoders placed there. None: as Ray set it
    threads: int | None = None
    # the pool the encoder belongs to (workers/pool_record.py): a gateway checks it before using an
    # encoder it found by name, which might be another deployment's
    pool_id: str = ""
