"""KV quantized at rest: sizes, errors, the KIVI axes, old blobs, and what `memory info` reports."""

from __future__ import annotations

import json
import struct
import sys
import zlib

import pytest
import torch

from scenekv.memory import CorruptBlob, MemoryStore, RollingConfig, RollingMemory, decode_chunk, encode_chunk
from scenekv.memory.quant import quantize
from scenekv.vlm import FrameSpan, KVChunk

from support.redis_fixtures import memory_info
from support.tiny_model import frames, tiny


def _chunk(tokens: int = 96, outliers: bool = True) -> KVChunk:
    g = torch.Generator().manual_seed(0)
    scale = torch.linspace(0.1, 10.0, 64) if outliers else torch.ones(64)
    keys = torch.randn(4, 2, tokens, 64, generator=g) * scale  # a few channels dominate, as in real keys
    values = torch.randn(4, 2, tokens, 64, generator=g)
    return KVChunk(keys, values, 17, [FrameSpan(3, 1.5, 0, tokens)], "m", "pool:16")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


def test_each_storage_dtype_round_trips_within_its_precision_and_size():
    chunk = _chunk()
    bf16 = len(encode_chunk(chunk, "bf16"))
    for name, max_error, size in (("exact", 0.0, 2.0), ("int8", 0.01, 0.55), ("int4", 0.1, 0.3)):
        blob = encode_chunk(chunk, name)
        back = decode_chunk(blob)
        assert back.keys.dtype == chunk.keys.dtype  # decoded into the model's dtype
        assert _rel(back.keys, chunk.keys) <= max_error and _rel(back.values, chunk.values) <= max_error
        assert len(blob) <= size * bf16, f"{name}: {len(blob)} bytes vs bf16 {bf16}"
        assert back.position == 17 and back.frames == chunk.frames
    assert torch.equal(decode_chunk(encode_chunk(chunk, "exact")).keys, chunk.keys)


def test_keys_per_channel_and_values_per_token_is_the_better_axis_choice():
    """KIVI's reason: keys have outlier channels. One scale per channel keeps the small channels'
    detail; one scale per token (the other axis) spends the codes on the outliers."""
    keys = _chunk().keys
    per_channel = quantize(keys, 8, axis=2, scale_dtype=torch.float32)
    per_token = quantize(keys, 8, axis=3, scale_dtype=torch.float32)
    from scenekv.memory.quant import dequantize

    small = slice(0, 8)  # the quiet channels
    err_channel = (dequantize(per_channel, torch.float32) - keys)[..., small].abs().mean()
    err_token = (dequantize(per_token, torch.float32) - keys)[..., small].abs().mean()
    assert err_channel * 5 < err_token


def test_a_version_1_blob_still_loads_and_damage_is_caught():
    chunk = _chunk(tokens=8)
    raw_k = chunk.keys.contiguous().view(torch.uint8).numpy().tobytes()
    raw_v = chunk.values.contiguous().view(torch.uint8).numpy().tobytes()
    header = {
        "model": "m",
        "carriers": "pool:16",
        "layers": 4,
        "kv_heads": 2,
        "tokens": 8,
        "head_dim": 64,
        "dtype": "float32",
        "byteorder": sys.byteorder,
        "position": 17,
        "span": 8,
        "position_end": 25,
        "first_pts": 1.5,
        "last_pts": 1.5,
        "frames": [[3, 1.5, 0, 8]],
        "crc32": zlib.crc32(raw_v, zlib.crc32(raw_k)),
    }
    head = json.dumps(header).encode()
    v1 = struct.pack(">4sHI", b"SKVC", 1, len(head)) + head + raw_k + raw_v
    assert torch.equal(decode_chunk(v1).values, chunk.values)
    blob = bytearray(encode_chunk(chunk, "int8"))
    blob[-3] ^= 0xFF
    with pytest.raises(CorruptBlob, match="CRC32"):
        decode_chunk(bytes(blob))


def test_streams_store_int8_by_default_and_memory_info_says_so(store: MemoryStore, redis_url, prefix):
    mem = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=6, chunk_frames=2)
    )
    mem.append(frames(10))
    mem.end()
    exact = RollingMemory.create(
        store, tiny(), carriers="pool:4", config=RollingConfig(window=6, chunk_frames=2, kv_dtype="exact")
    )
    exact.append(frames(10))
    exact.end()
    quantized, full = (memory_info(sid, redis_url, prefix) for sid in (mem.sid, exact.sid))
    assert set(quantized["kv_dtypes"]) == {"int8"} and set(full["kv_dtypes"]) == {"float"}
    assert quantized["kv_dtypes"]["int8"]["chunks"] == full["kv_dtypes"]["float"]["chunks"] > 0
    assert quantized["bytes"] < 0.5 * full["bytes"]  # fp32 on the CPU; head_dim 16: scales cost 25 %
