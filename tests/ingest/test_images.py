"""Pushed pictures to upright RGB arrays: formats, size limits, EXIF orientation (ingest/images.py)."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from scenekv.ingest import errors as E
from scenekv.ingest.images import decode_image

from support.ws_helpers import halves, is_halves, phone_jpeg


def encoded(array: np.ndarray, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **save)
    return buf.getvalue()


def test_jpeg_png_and_webp_decode_to_rgb_shrunk_to_max_side():
    for fmt in ("PNG", "JPEG", "WEBP"):
        rgb = decode_image(encoded(halves(64, 48), fmt), max_side=32)
        assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8, fmt
        assert is_halves(rgb), fmt


def test_a_phone_jpeg_with_exif_orientation_is_turned_upright():
    data = phone_jpeg(halves(128, 96))
    assert Image.open(io.BytesIO(data)).size == (96, 128)  # stored on its side
    rgb = decode_image(data)
    assert rgb.shape == (96, 128, 3) and is_halves(rgb)
    shrunk = decode_image(data, max_side=32)  # turned after the draft and the thumbnail
    assert shrunk.shape == (24, 32, 3) and is_halves(shrunk)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"not an image", "cannot decode image"),
        (b"GIF89a" + b"\0" * 64, "cannot decode image"),
        (encoded(np.zeros((4, 4, 3), np.uint8), "BMP"), "not JPEG, PNG or WebP"),
    ],
)
def test_other_bytes_are_refused(data, match):
    with pytest.raises(E.InvalidImage, match=match) as info:
        decode_image(data)
    assert not isinstance(info.value, E.ImageTooLarge)


def png_of_size(width: int, height: int, *, real: bool) -> bytes:
    """A grayscale PNG claiming width x height; with ``real`` its (black) pixels are all there."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    if real:
        packer, row = zlib.compressobj(9), b"\0" * (width + 1)
        pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    else:
        pixels = zlib.compress(b"\0" * (width + 1))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_huge_images_are_refused_before_decoding():
    with pytest.raises(E.ImageTooLarge, match="too large"):  # past PIL's own bomb limits
        decode_image(png_of_size(20000, 10000, real=False))
    big = png_of_size(5000, 5000, real=True)  # 25 Mpx: under PIL's limits, over ours
    started = time.perf_counter()
    with pytest.raises(E.ImageTooLarge, match="exceeds"):
        decode_image(big)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(E.ImageTooLarge):
        decode_image(png_of_size(300, 300, real=True), max_pixels=10_000)
    assert decode_image(png_of_size(640, 480, real=True), max_side=1024).shape == (480, 640, 3)
