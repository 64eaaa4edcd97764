"""PushSource: frames handed in by another thread, sampled and lag-bounded like a live source."""

from __future__ import annotations

import io
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from scenekv.ingest import PushSource
from scenekv.ingest import errors as E


def solid(value, w=64, h=48):
    return np.full((h, w, 3), value, np.uint8)


def encoded(array, fmt):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_push_samples_at_target_fps_from_another_thread():
    src = PushSource(fps=2.0, queue_size=100)

    def producer():
        for i in range(30):  # 10 fps for 3 s of stream time, pushed as fast as possible
            src.push(i / 10, solid(i))
        src.close()

    t = threading.Thread(target=producer)
    t.start()
    frames = list(src)
    t.join(2)
    assert [f.pts for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 5, 10, 15, 20, 25]
    assert src.stats.frames == 6 and src.stats.dropped == 0


def test_jpeg_png_bytes_and_resize():
    src = PushSource(fps=None, max_side=32, queue_size=10)
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    src.push(0.0, encoded(img, "PNG"))
    src.push(0.1, encoded(img, "JPEG"))
    src.push(0.2, img[:, :, 0])  # gray arrays are accepted too
    src.close()
    frames = list(src)
    assert [f.image.shape for f in frames] == [(24, 32, 3)] * 3
    left, right = frames[1].image[:, :12].mean(axis=(0, 1)), frames[1].image[:, 20:].mean(axis=(0, 1))
    assert left[0] > 200 and left[1] < 60 and right.max() < 40  # red on the left survives JPEG


def test_slow_consumer_drops_oldest_keeps_newest():
    src = PushSource(fps=None, queue_size=2)
    for i in range(50):
        src.push(i * 0.04, solid(i))
    src.close()
    frames = list(src)
    assert [f.index for f in frames] == [48, 49]  # the newest
    assert src.stats.dropped == 48
    assert frames[-1].pts == pytest.approx(49 * 0.04)


def test_consumer_blocks_until_a_frame_arrives_and_close_ends_iteration():
    src = PushSource(fps=None)
    got = []
    t = threading.Thread(target=lambda: got.extend(src))
    t.start()
    time.sleep(0.1)
    assert got == []
    src.push(1.0, solid(7))
    time.sleep(0.1)
    src.close()
    t.join(2)
    assert not t.is_alive() and [f.pts for f in got] == [1.0]


@pytest.mark.parametrize(
    "image,match",
    [
        (b"not an image", "not a readable JPEG/PNG"),
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (np.zeros((4, 4, 2), np.uint8), "HxWx3"),
        ("a string", "numpy array or JPEG/PNG bytes"),
    ],
)
def test_bad_images_are_rejected(image, match):
    src = PushSource()
    with pytest.raises(E.InvalidImage, match=match):
        src.push(0.0, image)


def test_pts_must_not_go_backwards_and_no_push_after_close():
    src = PushSource(fps=None)
    src.push(1.0, solid(1))
    with pytest.raises(E.InvalidImage, match="backwards"):
        src.push(0.5, solid(1))
    with pytest.raises(E.InvalidImage, match="finite"):
        src.push(float("nan"), solid(1))
    src.close()
    with pytest.raises(E.SourceClosed):
        src.push(2.0, solid(1))


def test_pushed_array_is_copied():
    src = PushSource(fps=None)
    buf = solid(10)
    src.push(0.0, buf)
    buf[:] = 99  # the pusher reuses its buffer
    src.close()
    assert int(next(src).image[0, 0, 0]) == 10


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


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_huge_images_are_refused_before_decoding():
    src = PushSource(fps=None)
    big = png_of_size(10000, 10000, real=True)
    with pytest.raises(E.InvalidImage, match="too large to decode"):  # past PIL's bomb limit: it raises
        src.push(0.0, png_of_size(20000, 10000, real=False))
    started = time.perf_counter()
    with pytest.raises(E.InvalidImage, match="100 Mpx"):  # PIL would only warn, then decode 100 MB
        src.push(0.1, big)
    assert time.perf_counter() - started < 0.5
    src.push(0.2, png_of_size(640, 480, real=True))  # ordinary sizes still pass
    src.close()
    assert [f.image.shape for f in src] == [(480, 640, 3)]
