"""Encoded pictures (JPEG, PNG or WebP bytes) to upright RGB arrays, with the limits that keep a server
safe: the one decoder of pushed frames.

A phone stores a picture as its sensor saw it and writes how to turn it in EXIF (orientation 6: a
quarter turn clockwise); a browser shows it upright, so the frame is turned here, or the model would
see it sideways. A JPEG is decoded at a reduced scale when ``max_side`` allows.

Pushed bytes come from anyone, so an image whose decoding work is out of proportion to its bytes is
refused from its header and marker structure, before any pixel is decoded (:func:`check_decode_work`):
more than ``max_pixels``, more pixels than its bytes can honestly describe, a progressive JPEG with
more scans than any encoder writes, a flood of JPEG marker segments or PNG chunks. What passes decodes
in at most about 0.3 s on one slow core (figures beside the limits; most frames take 3 to 20 ms).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps

from scenekv.defaults import VISION_MAX_SIDE

from .errors import ImageTooLarge, InvalidImage

FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MAX_PIXELS = 4096 * 4096  # PIL's own bomb guard only warns at 89 Mpx and refuses at 179 Mpx

# Figures below: Pillow 13 (libjpeg-turbo, libwebp 1.6, zlib), one core of a 2-core AMD EPYC.
#
# PNG and WebP decode every pixel at full size (~16 ns a pixel: a 4096x4096 one takes 0.22-0.27 s
# however few bytes describe it: 58 KiB of flat PNG, 706 bytes of lossless WebP). Pictures up to
# FREE_PIXELS (2560x1600 screens, every camera frame; at most ~65 ms) pass whatever their size; past
# it an image needs a byte per PIXELS_PER_BYTE pixels. Real content stays far below that (photos and
# screenshots: 1 to 30 pixels a byte); only blank or flat pictures past 4 Mpx are refused, and a
# 4096x4096 one then needs 256 KiB. Padding (metadata chunks) can meet the ratio, so the ratio makes
# a bomb cost its sender bytes; MAX_PIXELS is what bounds its cost.
FREE_PIXELS = 4 << 20
PIXELS_PER_BYTE = 64

# A JPEG is drafted at up to 1/8 scale, which shrinks the inverse DCT but not the entropy decoding:
# every scan still walks every 8x8 block of its components at full size (~0.6 ns a pixel a scan; a
# baseline 4096x4096 decodes in 5 ms). Repeating a progressive JPEG's 16-byte refinement scan costs
# that again each time: 24 KiB of 2048x2048 in 499 scans took 1.2 s, 32 KiB in 1000 scans 2.5 s.
# Encoders write 10 scans for colour, 6 for grey (libjpeg's default scripts), 18 for CMYK; MAX_SCANS
# leaves room for tuned scripts and bounds the floods: 32 scans of 4096x4096 decode in ~0.3 s.
MAX_SCANS = 32
# The work is pixels x scans: the standard 10 scans at MAX_PIXELS are free (<= 0.12 s); past that a
# JPEG needs a byte per SCAN_PIXELS_PER_BYTE pixel-scans. Huffman coding spends at least a bit per
# 8x8 block, so honest JPEGs stay under ~1700 (a flat progressive one; photos: 70-350), while 16 to 32
# scans of a 4096x4096 picture in 66-100 KiB make 2700-8300 (0.12-0.3 s).
FREE_SCAN_PIXELS = 10 * MAX_PIXELS
SCAN_PIXELS_PER_BYTE = 2048

# Pillow parses a JPEG's marker segments before its first scan, and every PNG chunk, one at a time in
# Python, holding the GIL: 500,000 empty COM segments in 2 MB took 0.4-0.5 s, 300,000 empty IDAT
# chunks 0.2 s. Real JPEGs carry under 100 segments (APPn metadata, tables, one DHT per scan), real
# PNGs under 600 chunks (libpng writes 8 KiB IDAT chunks: 512 in 4 MiB; one a row is 4096 at most).
MAX_JPEG_SEGMENTS = 1024
MAX_JPEG_STRAY_BYTES = 1024  # fill (0xFF) and junk bytes between segments; encoders write none
MAX_PNG_CHUNKS = 8192

# Both patterns test one byte after each 0xFF, so a search is linear, in C, whatever the bytes are:
# a marker's 0xFF (the last of any fill 0xFF bytes), then where a scan's entropy-coded data ends (an
# 0xFF that is not a stuffed 0x00, a restart marker RST0-7 or fill)
_MARKER = re.compile(rb"\xff(?=[^\x00\xff])")
_SCAN_END = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RST0-7, SOI: no length field
_EOI, _SOS = 0xD9, 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_image(data: bytes, *, max_side: int = VISION_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``data``, upright, at most ``max_side`` a side; InvalidImage for bytes
    that are not one of FORMATS or whose structure is hostile, ImageTooLarge (a subclass) for more
    than ``max_pixels`` or more pixels than the bytes justify (see :func:`check_decode_work`)."""
    try:
        scans = _walk(data)  # before Image.open: Pillow parses headers in Python
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=sorted(FORMATS))  # reads the header only
            if im.format not in FORMATS:  # an MPO (a JPEG followed by more pictures)
                raise InvalidImage(f"image format {im.format} is not JPEG, PNG or WebP")
            check_decode_work(im.format, im.size, len(data), scans=scans, max_pixels=max_pixels)
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when possible
            im = im.convert("RGB")  # keeps the EXIF block
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            # after shrinking: fewer pixels to turn; a damaged EXIF block keeps the picture as stored
            with contextlib.suppress(Exception):
                ImageOps.exif_transpose(im, in_place=True)
            return np.asarray(im, dtype=np.uint8)
    except InvalidImage:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ImageTooLarge(f"image too large: {exc}") from None
    except Image.UnidentifiedImageError:
        raise InvalidImage("cannot decode image: not JPEG, PNG or WebP") from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise InvalidImage(f"cannot decode image: {type(exc).__name__}: {exc}") from None


def check_decode_work(
    fmt: str, size: tuple[int, int], nbytes: int, *, scans: int = 1, max_pixels: int = MAX_PIXELS
) -> None:
    """Refuse a ``fmt`` picture of ``size`` in ``nbytes`` bytes (a JPEG in ``scans`` scans) whose
    decoding would cost out of proportion to what was sent: ImageTooLarge for its pixels, InvalidImage
    for a scan count no encoder writes. The bounds and their measurements are beside the constants."""
    w, h = size
    pixels = w * h
    if pixels > max_pixels:
        raise ImageTooLarge(f"image of {w}x{h} pixels exceeds {max_pixels} pixels")
    if fmt == "JPEG":
        if scans > MAX_SCANS:
            raise InvalidImage(f"JPEG of {scans} scans (at most {MAX_SCANS}): each decodes the whole picture")
        if pixels * scans > max(FREE_SCAN_PIXELS, SCAN_PIXELS_PER_BYTE * nbytes):
            raise ImageTooLarge(
                f"JPEG of {w}x{h} pixels in {scans} scans and {nbytes} bytes: more decoding than its "
                f"bytes justify (at most {SCAN_PIXELS_PER_BYTE} pixels x scans a byte); send it smaller"
            )
    elif pixels > max(FREE_PIXELS, PIXELS_PER_BYTE * nbytes):
        raise ImageTooLarge(
            f"image of {w}x{h} pixels in {nbytes} bytes: past {FREE_PIXELS} pixels an image needs a "
            f"byte per {PIXELS_PER_BYTE} pixels; send it smaller"
        )


def _walk(data: bytes) -> int:
    """The number of scans of JPEG bytes (1 for other formats), after walking the structure of JPEG
    and PNG bytes in bounded steps; WebP is left to libwebp, which parses its RIFF chunks in C."""
    if data[:2] == b"\xff\xd8":
        return max(1, _jpeg_scans(data))
    if data[:8] == _PNG_SIGNATURE:
        _check_png_chunks(data)
    return 1


def _jpeg_scans(data: bytes) -> int:
    """The number of scans (SOS markers) up to EOI, found by walking the marker segments by their
    lengths and each scan's entropy-coded data to its end (regex: in C), so that 0xFFDA bytes inside
    metadata (an EXIF thumbnail is a JPEG of its own) do not count. InvalidImage past MAX_SCANS,
    MAX_JPEG_SEGMENTS or MAX_JPEG_STRAY_BYTES; a truncated file stops the walk (Pillow says why)."""
    pos, scans, segments, stray, n = 2, 0, 0, 0, len(data)
    while pos < n:
        window = pos + MAX_JPEG_STRAY_BYTES - stray + 2  # the marker's code must lie inside the budget
        m = _MARKER.search(data, pos, window)
        if m is None:
            if window < n:
                raise InvalidImage(f"JPEG with over {MAX_JPEG_STRAY_BYTES} stray bytes between its segments")
            break
        stray += m.start() - pos  # fill and junk before the marker
        code, pos = data[m.start() + 1], m.start() + 2
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise InvalidImage(f"JPEG of more than {MAX_JPEG_SEGMENTS} marker segments")
        if code == _EOI:
            break
        if code in _STANDALONE:
            continue
        if pos + 2 > n:
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise InvalidImage(f"corrupt JPEG: marker segment 0xFF{code:02X} of length {length}")
        pos += length
        if code == _SOS:
            scans += 1
            if scans > MAX_SCANS:
                raise InvalidImage(
                    f"JPEG of more than {MAX_SCANS} scans: each scan decodes the whole picture again"
                )
            end = _SCAN_END.search(data, pos)
            pos = end.start() if end else n
    return scans


def _check_png_chunks(data: bytes) -> None:
    """InvalidImage for a PNG of more than MAX_PNG_CHUNKS chunks (up to IEND or a truncated one)."""
    pos, chunks, n = 8, 0, len(data)
    while pos + 8 <= n:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise InvalidImage(f"PNG of more than {MAX_PNG_CHUNKS} chunks")
        if data[pos + 4 : pos + 8] == b"IEND":
            return
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")  # length, type, data, CRC
