"""Defaults shared by the CLI and the layers, importable without torch or transformers."""

DEFAULT_CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
TINY_MODEL = "tiny-random-llava-onevision"
# "auto": the default checkpoint when it is cached or the hub answers, else the tiny random model.
AUTO_MODEL = "auto"
DEFAULT_FPS = 1.0
# Frames shrink at decode time to about the vision input (384 px for LLaVA-OV, ~448 for Qwen2.5-VL):
# no full-size RGB copies travel between actors.
VISION_MAX_SIDE = 512
