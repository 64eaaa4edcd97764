"""KV quantized at rest: how a chunk's keys and values are written to Redis, and read back.

A stream's stored KV is the bulk of its Redis memory, so chunks are kept in fewer bits than the
model computes them in. The scheme follows the KV-quantization literature (KIVI): keys have a few
outlier *channels* that keep their scale across tokens, so keys are quantized per channel (one
scale and offset per layer, head and channel, over the chunk's tokens); values have no such
channels and are quantized per token (one scale and offset per layer, head and token, over the
channels). Both asymmetric (min/max), rounded to nearest. Keys are stored after RoPE, as cached;
moving a chunk re-rotates the dequantized keys.

``KV_DTYPES`` (listed in scenekv/defaults.py, which the CLI reads without torch): ``int8`` (default),
``int4`` (two codes a byte), ``bf16`` / ``fp16`` / ``fp32`` casts, and ``exact``: the tensors as the
model computed them, bit for bit (what exactness tests pin).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from scenekv.defaults import DEFAULT_KV_DTYPE as DEFAULT_KV_DTYPE  # re-exported for memory's users
from scenekv.defaults import KV_DTYPES
from scenekv.errors import UserError

FLOAT_CASTS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
BITS = {"int8": 8, "int4": 4}


def check_kv_dtype(name: str) -> str:
    if name not in KV_DTYPES:
        raise UserError(f"unknown KV storage dtype {name!r}: use one of {', '.join(KV_DTYPES)}")
    return name


@dataclass
class QuantizedTensor:
    """Codes and the affine map back: x ~= codes * scale + low (broadcast over the reduced axis)."""

    codes: torch.Tensor  # uint8; int4 packs two codes a byte along the last axis
    scale: torch.Tensor  # float16 (values) or float32 (keys), size 1 on the reduced axis
    low: torch.Tensor  # same shape and dtype as scale
    bits: int
    last: int  # size of the last axis before packing (int4 halves it)


def quantize(x: torch.Tensor, bits: int, axis: int, scale_dtype: torch.dtype) -> QuantizedTensor:
    """Asymmetric min/max quantization of ``x`` with one scale per slice along ``axis``."""
    x = x.float()
    levels = (1 << bits) - 1
    low = x.amin(dim=axis, keepdim=True)
    high = x.amax(dim=axis, keepdim=True)
    scale = ((high - low) / levels).to(scale_dtype)
    low = low.to(scale_dtype)
    step = scale.float()
    step = torch.where(step > 0, step, torch.ones_like(step))  # a constant slice: every code is 0
    codes = ((x - low.float()) / step).round_().clamp_(0, levels).to(torch.uint8)
    last = codes.shape[-1]
    if bits == 4:
        if last % 2:
            codes = torch.cat([codes, codes.new_zeros(*codes.shape[:-1], 1)], dim=-1)
        codes = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return QuantizedTensor(codes.contiguous(), scale.contiguous(), low.contiguous(), bits, last)


def dequantize(q: QuantizedTensor, dtype: torch.dtype) -> torch.Tensor:
    codes = q.codes
    if q.bits == 4:
        codes = torch.stack([codes & 0x0F, codes >> 4], dim=-1).flatten(-2)[..., : q.last]
    return (codes.float() * q.scale.float() + q.low.float()).to(dtype)


FP16_SAFE = 6.0e4  # value scales and offsets go to fp16 below this magnitude (fp16 tops out at 65504)


def value_scale_dtype(values: torch.Tensor) -> torch.dtype:
    """fp16 for the per-token value scales (half their bytes), fp32 where values are too large for it."""
    return torch.float16 if float(values.abs().max()) < FP16_SAFE else torch.float32


def quantize_kv(
    keys: torch.Tensor, values: torch.Tensor, bits: int
) -> tuple[QuantizedTensor, QuantizedTensor]:
    """Keys [L, H, T, D] per channel (over tokens), values per token (over channels)."""
    return quantize(keys, bits, axis=2, scale_dtype=torch.float32), quantize(
        values, bits, axis=3, scale_dtype=value_scale_dtype(values)
    )
