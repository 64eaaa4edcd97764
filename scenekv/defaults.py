"""Defaults shared by the CLI and the layers, importable without torch or transformers."""

DEFAULT_CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
TINY_MODEL = "tiny-random-llava-onevision"
# SceneKV's own world model (vlm/checkpoints/): trained here on the synthetic world, shipped in the package.
WORLD_MODEL = "scenekv-world"
WORLD_MODEL_DIR = "scenekv-world-llava-ov"
# "auto": the default checkpoint when it is cached or the hub answers, else the world model (else the
# tiny random model, in a checkout that lacks the world model's weights).
AUTO_MODEL = "auto"
DEFAULT_FPS = 1.0
DEFAULT_CARRIERS = "pool:16"  # a stream's carriers when none are asked for (docs/benchmarks.md)
DEFAULT_PREFIX = "skv:"  # Redis key prefix of SceneKV's keys
# Frames shrink at decode time to about the vision input (384 px for LLaVA-OV, ~448 for Qwen2.5-VL):
# no full-size RGB copies travel between actors.
VISION_MAX_SIDE = 512
# How stream KV is stored in Redis (memory/quant.py implements each; the CLI offers them as choices).
KV_DTYPES = ("int8", "int4", "bf16", "fp16", "fp32", "exact")
DEFAULT_KV_DTYPE = "int8"
