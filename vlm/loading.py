"""Turn a ``--model`` value into a ready backend.

A value is a hub id, a local checkpoint directory, or one of the built-in random architectures
(vlm/configs.py). Random models are built from their config under a fixed seed, so every machine
gets bit-identical weights without a download; their answers are placeholders and ``is_random``
lets the CLI and the web page say so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch

from scenekv.defaults import AUTO_MODEL, DEFAULT_CHECKPOINT, TINY_MODEL, WORLD_MODEL, WORLD_MODEL_DIR
from scenekv.errors import UserError

from .backend import VLMBackend
from .configs import RANDOM_ARCHITECTURES
from .llava_onevision import LlavaOnevisionBackend
from .prompt import FORMAT_FILE, PromptFormat
from .qwen2_5_vl import Qwen25VLBackend
from .qwen3_vl import Qwen3VLBackend
from .smolvlm import SmolVLMBackend
from .tokenizer import SMOLVLM_TOKENS, build_tiny_tokenizer

log = logging.getLogger(__name__)

RANDOM_SEED = 1234
SIGLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP_MEAN_STD = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))  # Qwen2.5-VL


@dataclass(frozen=True)
class Family:
    """One model family: its transformers class (by name: imported when used), its backend, and the
    image normalisation its checkpoints publish (used for random builds and as the fallback)."""

    model_class: str
    backend: type[VLMBackend]
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    tokenizer_extra: tuple[str, ...] = ()  # special tokens the tiny tokenizer lacks


# Dispatch on config.model_type: what --model loads, by hub id, path or built-in name.
FAMILIES = {
    "llava_onevision": Family(
        "LlavaOnevisionForConditionalGeneration", LlavaOnevisionBackend, SIGLIP_MEAN_STD
    ),
    "qwen2_5_vl": Family("Qwen2_5_VLForConditionalGeneration", Qwen25VLBackend, CLIP_MEAN_STD),
    "qwen3_vl": Family("Qwen3VLForConditionalGeneration", Qwen3VLBackend, SIGLIP_MEAN_STD),
    "smolvlm": Family("SmolVLMForConditionalGeneration", SmolVLMBackend, SIGLIP_MEAN_STD, SMOLVLM_TOKENS),
}


def _model_class(family: Family):
    import transformers

    return getattr(transformers, family.model_class)


DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_device(device: str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"unknown device {device!r} (use cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for, but this machine has no CUDA device")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device, *, tiny: bool) -> torch.dtype:
    """The fastest precision the hardware really has, unless asked.

    bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with native bf16 (AVX512-BF16 or AMX:
    ~3.4x faster than fp32 there). On other CPUs bf16 is emulated and ~40x *slower* than fp32
    (measured on an AVX2-only EPYC), so they get fp32. Tiny models stay fp32: speed is irrelevant
    and exactness tests compare at 1e-4.
    """
    if dtype not in (None, "auto"):
        if dtype not in DTYPES:
            raise UserError(f"unknown dtype {dtype!r} (use {', '.join(sorted(set(DTYPES)))})")
        return DTYPES[dtype]
    if tiny:
        return torch.float32
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))


def world_model_path() -> Path:
    """Where the packaged world model lives (vlm/checkpoints/, shipped as package data)."""
    return Path(__file__).resolve().parent / "checkpoints" / WORLD_MODEL_DIR


def resolve_auto() -> str:
    """What ``--model auto`` means here: the default checkpoint, or offline the world model."""
    if _is_cached(DEFAULT_CHECKPOINT) or hub_reachable():
        return DEFAULT_CHECKPOINT
    fallback = WORLD_MODEL if (world_model_path() / "model.safetensors").is_file() else TINY_MODEL
    log.warning("the hub is unreachable and %s is not cached: using %s", DEFAULT_CHECKPOINT, fallback)
    return fallback


def resolve_model(model: str) -> str:
    """``auto`` and aliases -> what load_backend loads (a hub id, a path or a built-in name)."""
    if model == AUTO_MODEL:
        model = resolve_auto()
    if model == WORLD_MODEL:
        path = world_model_path()
        if not (path / "model.safetensors").is_file():
            raise UserError(f"the world model's weights are missing from this install ({path})")
        return str(path)
    return model


def load_backend(model: str, *, device: str | None = None, dtype: str | None = None) -> VLMBackend:
    dev = resolve_device(device)
    model = resolve_model(model)
    if model in RANDOM_ARCHITECTURES:
        return build_random_backend(
            model, device=dev, dtype=resolve_dtype(dtype, dev, tiny=model.startswith("tiny"))
        )
    small = Path(model).resolve() == world_model_path()  # 6 MB: fp32 everywhere, as it was trained
    return _load_pretrained(model, dev, resolve_dtype(dtype, dev, tiny=small))


def build_random_backend(name: str, *, device: torch.device, dtype: torch.dtype) -> VLMBackend:
    config = RANDOM_ARCHITECTURES[name]()
    family = FAMILIES[config.model_type]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_SEED)
        # Built in fp32 then cast, so the weights are the same whatever dtype is asked for.
        net = _model_class(family)._from_config(config, dtype=torch.float32)
    net = net.to(device=device, dtype=dtype)
    mean, std = family.mean_std
    tokenizer = build_tiny_tokenizer(512, family.tokenizer_extra)
    return family.backend(net, tokenizer, model_id=name, image_mean=mean, image_std=std, is_random=True)


def _load_pretrained(model: str, device: torch.device, dtype: torch.dtype) -> VLMBackend:
    from transformers import AutoConfig, AutoTokenizer

    if not Path(model).exists() and not _is_cached(model) and not hub_reachable():
        raise UserError(
            f"cannot load model {model!r}: not a local directory, not in the local cache, and the hub is "
            f"unreachable. Offline, use --model {TINY_MODEL} or one of {sorted(RANDOM_ARCHITECTURES)}"
        )
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        where = (
            "local directory"
            if Path(model).exists()
            else "hub id (and the hub is unreachable or it does not exist)"
        )
        raise UserError(
            f"cannot load model {model!r} as a {where}: {str(exc).splitlines()[0]}. "
            f"Offline, use --model tiny-random-llava-onevision or one of {sorted(RANDOM_ARCHITECTURES)}"
        ) from exc
    if config.model_type not in FAMILIES:
        raise UserError(
            f"model {model!r} is a {config.model_type!r}; supported: {', '.join(FAMILIES)} checkpoints"
        )
    family = FAMILIES[config.model_type]
    net = _model_class(family).from_pretrained(model, dtype=dtype).to(device)
    tokenizer = AutoTokenizer.from_pretrained(model)
    mean, std = _image_normalisation(model, family.mean_std)
    model_id = WORLD_MODEL if Path(model).resolve() == world_model_path() else model
    backend = family.backend(
        net, tokenizer, model_id=model_id, image_mean=mean, image_std=std, is_random=False
    )
    _apply_format(backend, model)
    backend.revision = checkpoint_revision(model)
    return backend


def checkpoint_revision(model: str) -> str | None:
    """A checkpoint trained here (it has training.json) is named by its run: retrained, it keeps its
    folder and model id, and a stream recorded with the old weights must not be continued with the new."""
    record = Path(model) / "training.json"
    if not record.is_file():
        return None
    return "run-" + hashlib.sha256(record.read_bytes()).hexdigest()[:12]


def _apply_format(backend: VLMBackend, model: str) -> None:
    """A checkpoint trained in SceneKV's own layout says so in scenekv.json (vlm/prompt.py)."""
    if not Path(model).is_dir() or not (Path(model) / FORMAT_FILE).is_file():
        return
    meta = json.loads((Path(model) / FORMAT_FILE).read_text())
    fmt = PromptFormat.from_dict(meta.get("prompt", {}))
    if (fmt.tag_after or fmt.anchor_last) and not isinstance(backend, LlavaOnevisionBackend):
        raise UserError(f"{model}: tag_after / anchor_last layouts need 1-D RoPE (a LLaVA-OneVision model)")
    backend.prompt_format = fmt
    backend.world_only = bool(meta.get("world_only", False))
    layer = meta.get("signature_layer")
    if layer is not None:
        if not isinstance(backend, LlavaOnevisionBackend):
            raise UserError(f"{model}: signature_layer is read by LLaVA-OneVision backends only")
        depth = backend.model.config.vision_config.num_hidden_layers
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= depth:
            raise UserError(f"{model}: signature_layer must be a vision layer 0..{depth}, got {layer!r}")
        backend.signature_layer = layer


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets a clear answer in seconds, not 30 s of retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _is_cached(model: str) -> bool:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(model, local_files_only=True)
        return True
    except (OSError, ValueError):
        return False


def _image_normalisation(
    model: str, fallback: tuple[tuple[float, ...], tuple[float, ...]] = SIGLIP_MEAN_STD
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The checkpoint's own mean/std: transformers' class default is CLIP's, SigLIP checkpoints use 0.5."""
    from transformers.utils import cached_file

    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        try:
            path = cached_file(model, name, _raise_exceptions_for_missing_entries=False)
        except OSError:
            path = None
        if path:
            cfg = json.loads(Path(path).read_text())
            if "image_mean" in cfg and "image_std" in cfg:
                return tuple(cfg["image_mean"]), tuple(cfg["image_std"])
    log.warning("no preprocessor config in %s; assuming the family's normalisation %s", model, fallback)
    return fallback
