"""Model backends, carrier compression and the per-stream KV state.

Public API:
    load_backend(model, device=None, dtype=None) -> VLMBackend
    CarrierSpec.parse("pool:16+dedup:0.95")
    StreamSession(backend, carriers) .append([(pts, rgb), ...]) .export(first, last) .evict(through)
                                    .context(chunks) .ask(question, chunks=..., params=...)
    KVChunk (movable KV of consecutive frames), SamplingParams, Generation
"""

from .answer import Answerer, nearest_frame_pts
from .backend import KVGeometry, VisionFeatures, VLMBackend
from .carriers import CarrierSpec
from .configs import DEFAULT_CHECKPOINT, FULL_RANDOM_LLAVA_OV, TINY_LLAVA_OV
from .generate import Generation, SamplingParams
from .kv import FrameSpan, KVChunk, rotate_keys
from .loading import load_backend
from .prompt import Prompter, PromptFormat
from .session import FrameRecord, StreamSession, time_tag

__all__ = [
    "Answerer",
    "PromptFormat",
    "Prompter",
    "nearest_frame_pts",
    "DEFAULT_CHECKPOINT",
    "FULL_RANDOM_LLAVA_OV",
    "TINY_LLAVA_OV",
    "CarrierSpec",
    "FrameRecord",
    "FrameSpan",
    "Generation",
    "KVChunk",
    "KVGeometry",
    "SamplingParams",
    "StreamSession",
    "VLMBackend",
    "VisionFeatures",
    "load_backend",
    "rotate_keys",
    "time_tag",
]
