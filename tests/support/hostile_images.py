"""Crafted pictures whose decoding costs out of proportion to their bytes (issue 28), for the tests of
ingest/images.py's pre-checks, the gateway's decode pool and the hostile-client tests.

Each builder says what makes its picture costly. The limits they meet or pass are ingest/images.py's:
at most MAX_PIXELS (4096x4096); past FREE_PIXELS (2048x2048) a PNG or WebP needs a byte per 64 pixels
(256 KiB at 4096x4096); a JPEG at most 32 scans and, past 10 scans of 4096x4096, a byte per 2048
pixel-scans (256 KiB for 32 scans of 4096x4096).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encoded(image: Image.Image | np.ndarray, fmt: str, **save) -> bytes:
    """``image`` (a PIL image or an RGB array) as Pillow writes it in ``fmt`` with ``save``'s options."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


def plain_jpeg(size: tuple[int, int] = (640, 480), color=(200, 40, 40), **save) -> bytes:
    """A flat baseline JPEG: nothing costly, a few milliseconds to decode (the control)."""
    return encoded(Image.new("RGB", size, color), "JPEG", **save)


# ---- JPEG: every scan walks every 8x8 block of the whole picture ----------------------------------


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan of a JPEG Pillow wrote: its SOS segment and entropy-coded data."""
    spans, pos = [], 2
    while data[pos + 1] != 0xD9:  # EOI
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDA:  # SOS: the data runs to the next marker that is not 0xFF00 or RSTn
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
            spans.append((pos, end))
        pos = end
    return spans


def with_scans(size: tuple[int, int], total: int, mode: str = "L", *, padding: int = 0) -> bytes:
    """A flat progressive JPEG of ``size`` in ``total`` scans: Pillow's own, then its last scan (a
    16-40 byte AC refinement scan, valid again and again: libjpeg only warns) repeated. Each scan
    costs a walk over the whole picture (~0.6 ns a pixel) for a few bytes: 2048x2048 in 499 scans is
    24 KiB and 1.2 s. ``padding``: bytes of COM segments after SOI, which make the file as large as
    the pre-checks ask of its pixel-scans (256 KiB lets 32 scans of 4096x4096 through: ~0.3 s)."""
    data = encoded(Image.new(mode, size, 128 if mode == "L" else (120, 130, 140)), "JPEG", progressive=True)
    spans = jpeg_scans(data)
    start, end = spans[-1]
    data = data[:end] + data[start:end] * (total - len(spans)) + data[end:]
    com = b""
    while padding > 0:
        n = min(padding, 0xFFFF - 2)
        com += b"\xff\xfe" + struct.pack(">H", n + 2) + b"\0" * n
        padding -= n
    return data[:2] + com + data[2:]


# ---- PNG: zlib inflates a blank row to 12 KiB from a few bytes -----------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """One PNG chunk: length, type, payload, CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def flat_png(width: int, height: int, *, padding: int = 0) -> bytes:
    """An RGB PNG, all black, every row present: zlib makes 4096x4096 of it (48 MiB of pixels to
    inflate and filter) 50 KiB. ``padding``: bytes of a private ancillary chunk; 256 KiB meets the
    pixels-a-byte ratio at 4096x4096, the costliest PNG the pre-checks let through (~0.2 s)."""
    packer, row = zlib.compressobj(9), b"\0" * (3 * width + 1)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pad = png_chunk(b"prVt", b"\0" * padding) if padding else b""
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + pad
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


# ---- WebP: libwebp allocates and fills the whole picture, however few bytes describe it ---------


def webp_canvas(width: int, height: int) -> bytes:
    """A two-frame 16x16 animated WebP (138 bytes) whose VP8X header claims a ``width`` x ``height``
    canvas: libwebp allocates and clears the whole canvas to decode its first frame."""
    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(2)]
    data = bytearray(encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True))
    assert data[12:16] == b"VP8X"
    data[24:27], data[27:30] = (width - 1).to_bytes(3, "little"), (height - 1).to_bytes(3, "little")
    return bytes(data)


def padded_webp(width: int, height: int, padding: int) -> bytes:
    """A flat lossless WebP (4096x4096: 706 bytes, 64 MiB of RGBA to fill and copy) with an unknown
    RIFF chunk of ``padding`` bytes; 256 KiB meets the pixels-a-byte ratio at 4096x4096 (~0.2 s)."""
    data = encoded(Image.new("RGB", (width, height), (10, 200, 30)), "WEBP", lossless=True)
    data += b"PADD" + struct.pack("<I", padding) + b"\0" * padding
    return data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
