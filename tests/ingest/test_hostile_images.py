"""Pictures whose decoding costs out of proportion to their bytes are refused from their structure,
before any pixel is decoded; camera frames, screenshots and phone photos still decode (issue 28)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from scenekv.ingest import errors as E
from scenekv.ingest import images
from scenekv.ingest.images import check_decode_work, decode_image

from support.hostile_images import encoded, flat_png, png_chunk, webp_canvas, with_scans
from support.ws_helpers import halves, is_halves, phone_jpeg


class Decoded(BaseException):
    """Raised by a patched Pillow when a picture's pixels are decoded (not an Exception: the decoder
    would turn one into InvalidImage)."""


@pytest.fixture
def no_decoding(monkeypatch):
    """Pillow refuses to decode pixels: what is refused under it was refused from its structure."""

    def load(self):
        raise Decoded(self.format)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "load", load)


def camera(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth gradients (red left to right, green top to bottom), sensor noise."""
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)
    img[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    img[..., 2] = 128
    noise = np.random.default_rng(seed).integers(0, 16, (height, width, 1), dtype=np.uint8)
    return np.clip(img, 8, 239) + noise - 8


def screenshot(width: int, height: int) -> np.ndarray:
    """A screenshot-like picture: a light page, a dark side bar, lines of 'text'."""
    img = np.full((height, width, 3), 245, np.uint8)
    img[:, : width // 6] = (40, 44, 52)
    glyphs = np.random.default_rng(1).random((height, width)) < 0.3
    lines = (np.arange(height) % 24 < 10)[:, None] & (np.arange(width) > width // 5)[None, :]
    img[glyphs & lines] = 30
    return img


# ---- refused: each from its structure (no pixel decoded), with the error that says why ----


@pytest.mark.parametrize(
    ("name", "make", "error", "match"),
    [
        # the case: 2048x2048 grey in 24 KiB, 499 scans: 1.2 s on the gateway's loop before
        ("499 scans in 24 KiB", lambda: with_scans((2048, 2048), 499), E.InvalidImage, "more than 32 scans"),
        ("33 scans", lambda: with_scans((1024, 1024), 33), E.InvalidImage, "more than 32 scans"),
        # 16 scans of 4096x4096 in 66 KiB: 0.16 s; under the scan limit, over pixel-scans a byte
        ("16 scans of 16 Mpx", lambda: with_scans((4096, 4096), 16), E.ImageTooLarge, "16 scans"),
        ("4096x4096 PNG in 50 KiB", lambda: flat_png(4096, 4096), E.ImageTooLarge, "byte per 64 pixels"),
        (
            "4096x4096 lossless WebP in 706 bytes",
            lambda: encoded(Image.new("RGB", (4096, 4096), (10, 200, 30)), "WEBP", lossless=True),
            E.ImageTooLarge,
            "706 bytes",
        ),
        (
            "2100x2100 lossy WebP",
            lambda: encoded(Image.new("RGB", (2100, 2100), (10, 200, 30)), "WEBP", quality=80),
            E.ImageTooLarge,
            "2100x2100",
        ),
        ("4000x4000 WebP canvas in 138 bytes", lambda: webp_canvas(4000, 4000), E.ImageTooLarge, "4000x4000"),
        ("over MAX_PIXELS", lambda: flat_png(4097, 4096), E.ImageTooLarge, "exceeds"),
    ],
)
def test_out_of_proportion_pictures_are_refused_before_decoding(no_decoding, name, make, error, match):
    with pytest.raises(error, match=match) as info:
        decode_image(make())
    assert type(info.value) is error, name


def test_floods_that_pillow_would_parse_in_python_are_refused():
    """500,000 empty COM segments (2 MB) held the GIL in Pillow's header parser for 0.4 s; so did
    300,000 empty IDAT chunks for 0.2 s."""
    small = encoded(halves(64, 48), "JPEG")
    with pytest.raises(E.InvalidImage, match="more than 1024 marker segments"):
        decode_image(small[:2] + b"\xff\xfe\x00\x02" * 100_000 + small[2:])
    with pytest.raises(E.InvalidImage, match="stray bytes"):
        decode_image(small[:2] + b"\xff" * 2_000_000 + small[2:])  # fill bytes, looped over one by one
    with pytest.raises(E.InvalidImage, match="stray bytes"):
        decode_image(small[:2] + b"\0" * 2_000_000 + small[2:])
    png = encoded(halves(64, 48), "PNG")
    iend = png.index(b"IEND") - 4
    with pytest.raises(E.InvalidImage, match="more than 8192 chunks"):
        decode_image(png[:iend] + png_chunk(b"IDAT", b"") * 10_000 + png[iend:])


def test_other_formats_never_reach_their_parsers(no_decoding):
    for fmt in ("BMP", "GIF", "TIFF"):
        with pytest.raises(E.InvalidImage, match="not JPEG, PNG or WebP"):
            decode_image(encoded(halves(16, 12), fmt))


def test_the_bounds_at_their_edges():
    free = images.FREE_PIXELS  # 2048x2048: any PNG or WebP this size passes
    check_decode_work("PNG", (2048, 2048), 100)
    with pytest.raises(E.ImageTooLarge):
        check_decode_work("PNG", (2048, 2049), 100)
    check_decode_work("WEBP", (4096, 4096), 4096 * 4096 // images.PIXELS_PER_BYTE)
    with pytest.raises(E.ImageTooLarge):
        check_decode_work("WEBP", (4096, 4096), 4096 * 4096 // images.PIXELS_PER_BYTE - 1)
    check_decode_work("JPEG", (4096, 4096), 100, scans=10)  # the standard scans at MAX_PIXELS: free
    check_decode_work("JPEG", (4096, 4096), 100)  # baseline: drafted, cheap whatever its bytes
    with pytest.raises(E.ImageTooLarge):
        check_decode_work("JPEG", (4096, 4096), 100, scans=11)
    check_decode_work("JPEG", (2048, 2048), 100, scans=32)
    with pytest.raises(E.InvalidImage):
        check_decode_work("JPEG", (16, 16), 100, scans=33)
    with pytest.raises(E.ImageTooLarge, match="exceeds"):
        check_decode_work("JPEG", (4097, 4096), 10 << 20)
    assert free == 2048 * 2048


# ---- honest pictures still pass ----


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080)])
@pytest.mark.parametrize("quality", [50, 95])
@pytest.mark.parametrize("progressive", [False, True])
def test_camera_frames_decode(size, quality, progressive):
    frame = camera(*size)
    rgb = decode_image(encoded(frame, "JPEG", quality=quality, progressive=progressive))
    w, h = size
    assert rgb.shape == (512 * h // w, 512, 3)
    # the frame's gradient survives: red grows left to right, green top to bottom
    assert rgb[:, -8:, 0].mean() - rgb[:, :8, 0].mean() > 200
    assert rgb[-8:, :, 1].mean() - rgb[:8, :, 1].mean() > 200


def test_blank_and_flat_frames_decode():
    """A lens cap, a blank screen: the fewest bytes an honest picture has."""
    black = decode_image(encoded(np.zeros((1080, 1920, 3), np.uint8), "JPEG", progressive=True))
    assert black.shape == (288, 512, 3) and black.max() < 8
    blank = decode_image(encoded(np.full((1600, 2560, 3), 250, np.uint8), "PNG"))  # 4 Mpx: free
    assert blank.shape == (320, 512, 3) and blank.min() > 240
    flat = decode_image(encoded(Image.new("RGB", (4096, 4096), (120, 130, 140)), "JPEG"))  # 262 KiB
    assert flat.shape == (512, 512, 3) and abs(int(flat[..., 2].mean()) - 140) < 4


def test_screenshots_and_webp_decode():
    shot = screenshot(3840, 2160)  # 8.3 Mpx: past the free size, 10-30 pixels a byte
    for fmt, save in [("PNG", {}), ("WEBP", {"lossless": True, "method": 0})]:
        data = encoded(shot, fmt, **save)
        assert 3840 * 2160 / len(data) < images.PIXELS_PER_BYTE / 2, fmt
        rgb = decode_image(data)
        assert rgb.shape == (288, 512, 3), fmt
        assert rgb[:, :60].mean() < 80 and rgb[:, -20:].mean() > 200, fmt  # side bar left, page right
    rgb = decode_image(encoded(camera(1920, 1080), "WEBP", quality=80))
    assert rgb.shape == (288, 512, 3) and rgb[:, -8:, 0].mean() - rgb[:, :8, 0].mean() > 200


def test_a_large_progressive_photo_decodes():
    rgb = decode_image(encoded(camera(4032, 3024), "JPEG", quality=85, progressive=True))
    assert rgb.shape == (384, 512, 3)


def test_phone_photos_decode_and_their_exif_thumbnail_does_not_count_as_scans():
    """A phone's JPEG: EXIF orientation, and an EXIF thumbnail that is a JPEG of its own, whose
    scans (0xFFDA bytes) sit inside the APP1 segment."""
    thumb = with_scans((64, 48), 40, mode="RGB")  # alone, it would be refused
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = halves(1600, 1200)
    data = encoded(
        np.rot90(upright).copy(), "JPEG", quality=92, progressive=True, exif=exif.tobytes() + thumb
    )
    assert data.count(b"\xff\xda") > images.MAX_SCANS
    rgb = decode_image(data)
    assert rgb.shape == (384, 512, 3) and is_halves(rgb)
    assert is_halves(decode_image(phone_jpeg(halves(4032, 3024)), max_side=256))
