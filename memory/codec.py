"""Binary encodings of a KV chunk and of its retrieval keys (no pickle: safe to read from a shared Redis).

Chunk blob::

    b"SKVC" | u16 version | u32 header length | JSON header | payload

The header says everything needed to rebuild the tensors and to use them (model id, layers, kv heads,
head dim, dtype, tokens, position range and span, frame spans, carriers, pts range, codec) plus a
CRC32 of the payload, so a truncated or foreign blob fails loudly instead of becoming garbage KV.
The payload depends on the ``codec`` (version 2; version 1 blobs, always ``float``, still load):

- ``float``: raw keys | raw values, little-endian (bf16 through a uint8 view): a round trip is
  bit-exact in the stored dtype (the model's own with ``--kv-dtype exact``, else a cast).
- ``int8`` / ``int4`` (memory/quant.py): key codes | key scales | key offsets | value codes | value
  scales | value offsets; keys per channel (fp32 scales), values per token (fp16 scales); int4 packs
  two codes a byte. Decoded into ``dtype``, the dtype the model computed them in.

Retrieval keys blob (``b"SKVK"``, same framing): the chunk's mean key per layer and kv head
[layers, kv_heads, head_dim] and its pooled visual feature (mean of the frames' unit signatures,
renormalised), both float32. They are small (a few KiB) and stored beside the chunk so that QA can
score every chunk of a stream without moving any KV.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from scenekv.errors import UserError
from scenekv.vlm import FrameSpan, KVChunk

from .quant import BITS, FLOAT_CASTS, QuantizedTensor, check_kv_dtype, dequantize, quantize_kv

CHUNK_MAGIC = b"SKVC"
KEYS_MAGIC = b"SKVK"
VERSION = 2
READABLE = (1, 2)  # version 1: float payloads only, no codec field
_FRAME = struct.Struct(">4sHI")  # magic, version, header length

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


class CorruptBlob(UserError):
    """A stored blob that is not a SceneKV chunk of a version this code reads."""

    code = "corrupt_chunk"


@dataclass
class ChunkKeys:
    """What retrieval scores a chunk by, without its KV."""

    mean_keys: torch.Tensor  # [layers, kv_heads, head_dim] float32: mean over the chunk's tokens
    feature: torch.Tensor  # [D] float32 unit vector: pooled frame signatures (empty if none)


def _raw(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous()
    return memoryview(t.view(torch.uint8).numpy()).cast("B")


def _frame(magic: bytes, header: dict, payload: list[memoryview], version: int = VERSION) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([_FRAME.pack(magic, version, len(head)), head, *payload])


def _unframe(blob: bytes | bytearray | memoryview, magic: bytes) -> tuple[dict, memoryview]:
    view = memoryview(blob)
    if len(view) < _FRAME.size:
        raise CorruptBlob(f"blob of {len(view)} bytes is too short to be a SceneKV record")
    got, version, hlen = _FRAME.unpack_from(view)
    if got != magic:
        raise CorruptBlob(f"not a SceneKV record (magic {bytes(got)!r}, expected {magic!r})")
    if version not in READABLE:
        raise CorruptBlob(f"SceneKV record version {version} is not readable by this version ({VERSION})")
    start = _FRAME.size + hlen
    try:
        header = json.loads(bytes(view[_FRAME.size : start]))
    except ValueError as exc:
        raise CorruptBlob("SceneKV record header is not valid JSON") from exc
    return header, view[start:]


def _tensor(data: memoryview, dtype: torch.dtype, shape: list[int]) -> torch.Tensor:
    if len(data) == 0:  # e.g. a chunk without frame signatures: torch cannot view an empty byte tensor
        return torch.zeros([0 if d == -1 else d for d in shape], dtype=dtype)
    arr = np.frombuffer(data, dtype=np.uint8).copy()  # owned, writable memory
    return torch.from_numpy(arr).view(dtype).reshape(shape)


def encode_chunk(chunk: KVChunk, kv_dtype: str = "exact") -> bytes:
    """The chunk as a blob, its KV stored as ``kv_dtype`` (memory/quant.py KV_DTYPES)."""
    if chunk.keys.shape != chunk.values.shape or chunk.keys.dim() != 4:
        raise ValueError(f"keys {tuple(chunk.keys.shape)} and values {tuple(chunk.values.shape)} differ")
    if chunk.keys.dtype not in DTYPE_NAMES or chunk.values.dtype != chunk.keys.dtype:
        raise ValueError(f"unsupported KV dtype {chunk.keys.dtype}")
    kv_dtype = check_kv_dtype(kv_dtype)
    if kv_dtype in BITS:
        qk, qv = quantize_kv(chunk.keys, chunk.values, BITS[kv_dtype])
        payload = [_raw(t) for q in (qk, qv) for t in (q.codes, q.scale, q.low)]
        codec, dtype = kv_dtype, chunk.keys.dtype
        value_scales = DTYPE_NAMES[qv.scale.dtype]
    else:
        cast = FLOAT_CASTS.get(kv_dtype, chunk.keys.dtype)
        payload = [_raw(chunk.keys.to(cast)), _raw(chunk.values.to(cast))]
        codec, dtype = "float", cast
        value_scales = None
    layers, kv_heads, tokens, head_dim = chunk.keys.shape
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    header = {
        "model": chunk.model_id,
        "carriers": chunk.carriers,
        "layers": layers,
        "kv_heads": kv_heads,
        "tokens": tokens,
        "head_dim": head_dim,
        "codec": codec,
        "dtype": DTYPE_NAMES[dtype],
        **({"value_scales": value_scales} if value_scales else {}),
        "byteorder": sys.byteorder,
        "position": chunk.position,
        "span": chunk.span,  # RoPE positions covered (< tokens under M-RoPE)
        "position_end": chunk.position + chunk.span,
        "first_pts": chunk.first_pts if chunk.frames else None,
        "last_pts": chunk.last_pts if chunk.frames else None,
        "frames": [[f.index, f.pts, f.offset, f.tokens] for f in chunk.frames],
        "crc32": crc,
    }
    return _frame(CHUNK_MAGIC, header, payload)


def chunk_header(blob: bytes) -> dict:
    """The JSON header of a chunk blob (cheap: no tensor is built)."""
    return _unframe(blob, CHUNK_MAGIC)[0]


def _layout(
    codec: str, dtype: torch.dtype, shape: list[int], value_scales: torch.dtype = torch.float16
) -> list[tuple[str, torch.dtype, list[int]]]:
    """(name, dtype, shape) of each payload part, in order."""
    if codec == "float":
        return [("keys", dtype, shape), ("values", dtype, shape)]
    if codec not in BITS:
        raise CorruptBlob(f"unknown chunk codec {codec!r}")
    layers, heads, tokens, dim = shape
    packed = [layers, heads, tokens, dim if BITS[codec] == 8 else (dim + 1) // 2]
    per_channel, per_token = [layers, heads, 1, dim], [layers, heads, tokens, 1]
    return [
        ("key_codes", torch.uint8, packed),
        ("key_scale", torch.float32, per_channel),
        ("key_low", torch.float32, per_channel),
        ("value_codes", torch.uint8, packed),
        ("value_scale", value_scales, per_token),
        ("value_low", value_scales, per_token),
    ]


def decode_chunk(blob: bytes | bytearray | memoryview, *, verify: bool = True) -> KVChunk:
    h, payload = _unframe(blob, CHUNK_MAGIC)
    try:
        dtype = DTYPES[h["dtype"]]
        codec = h.get("codec", "float")
        shape = [h["layers"], h["kv_heads"], h["tokens"], h["head_dim"]]
        if h.get("byteorder", "little") != sys.byteorder:
            raise CorruptBlob(f"chunk written on a {h['byteorder']}-endian machine")
        layout = _layout(codec, dtype, shape, DTYPES[h.get("value_scales", "float16")])
        sizes = [
            int(np.prod(s)) * torch.finfo(d).bits // 8 if d.is_floating_point else int(np.prod(s))
            for _, d, s in layout
        ]
        if len(payload) != sum(sizes):
            raise CorruptBlob(f"chunk payload is {len(payload)} bytes, header says {sum(sizes)}")
        if verify and zlib.crc32(payload) != h["crc32"]:
            raise CorruptBlob("chunk payload fails its CRC32: the blob is damaged")
        parts, at = {}, 0
        for (name, d, s), n in zip(layout, sizes, strict=True):
            parts[name] = _tensor(payload[at : at + n], d, s)
            at += n
        if codec == "float":
            keys, values = parts["keys"], parts["values"]
        else:
            bits = BITS[codec]
            keys = dequantize(
                QuantizedTensor(parts["key_codes"], parts["key_scale"], parts["key_low"], bits, shape[3]),
                dtype,
            )
            values = dequantize(
                QuantizedTensor(
                    parts["value_codes"], parts["value_scale"], parts["value_low"], bits, shape[3]
                ),
                dtype,
            )
        frames = [FrameSpan(int(i), float(p), int(o), int(t)) for i, p, o, t in h["frames"]]
        return KVChunk(
            keys=keys,
            values=values,
            position=int(h["position"]),
            frames=frames,
            model_id=h["model"],
            carriers=h["carriers"],
            span=int(h.get("span") or h["tokens"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptBlob(f"chunk header is incomplete: {exc}") from exc


def chunk_keys(chunk: KVChunk, signatures: torch.Tensor | None) -> ChunkKeys:
    """Mean key per layer and head (ReKV-style) and the pooled visual feature of the chunk's frames.

    The mean key is taken with RoPE undone (``content_keys``, computed by the session that knows each
    token's position), so a chunk scores the same wherever it sits; the cached keys' plain mean is
    the fallback for chunks made without it.
    """
    if chunk.content_keys is not None:
        mean_keys = chunk.content_keys.float().cpu()
    else:
        mean_keys = chunk.keys.float().mean(dim=2).cpu()
    if signatures is None or signatures.numel() == 0:
        feature = torch.zeros(0)
    else:
        feature = torch.nn.functional.normalize(signatures.float().mean(dim=0), dim=0).cpu()
    return ChunkKeys(mean_keys, feature)


def encode_keys(keys: ChunkKeys) -> bytes:
    mean = keys.mean_keys.float()
    header = {"shape": list(mean.shape), "feature_dim": int(keys.feature.numel()), "dtype": "float32"}
    return _frame(KEYS_MAGIC, header, [_raw(mean), _raw(keys.feature.float())])


def decode_keys(blob: bytes | bytearray | memoryview) -> ChunkKeys:
    h, payload = _unframe(blob, KEYS_MAGIC)
    try:
        shape = [int(x) for x in h["shape"]]
        n = int(np.prod(shape)) * 4
        if len(payload) != n + 4 * int(h["feature_dim"]):
            raise CorruptBlob("retrieval key payload does not match its header")
        return ChunkKeys(
            _tensor(payload[:n], torch.float32, shape), _tensor(payload[n:], torch.float32, [-1])
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptBlob(f"retrieval key header is incomplete: {exc}") from exc
