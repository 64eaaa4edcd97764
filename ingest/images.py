"""Encoded pictures (JPEG, PNG or WebP bytes) to upright RGB arrays, with the limits that keep a server
safe: the one decoder of pushed frames.

A phone stores a picture as its sensor saw it and writes how to turn it in EXIF (orientation 6: a
quarter turn clockwise); a browser shows it upright, so the frame is turned here, or the model would
see it sideways. Images over ``max_pixels`` are refused from their header, before any decoding (a
4 MiB PNG can claim gigapixels), and a JPEG is decoded at a reduced scale when ``max_side`` allows.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from scenekv.defaults import VISION_MAX_SIDE

from .errors import ImageTooLarge, InvalidImage

FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
MAX_PIXELS = 4096 * 4096  # PIL's own bomb guard only warns at 89 Mpx and refuses at 179 Mpx


def decode_image(data: bytes, *, max_side: int = VISION_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB of ``data``, upright, at most ``max_side`` a side; InvalidImage for bytes
    that are not one of FORMATS, ImageTooLarge (a subclass) for more than ``max_pixels``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
            if im.format not in FORMATS:
                raise InvalidImage(f"image format {im.format} is not JPEG, PNG or WebP")
            w, h = im.size
            if w * h > max_pixels:
                raise ImageTooLarge(f"image of {w}x{h} pixels exceeds {max_pixels} pixels")
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
    except Exception as exc:  # PIL raises many types for corrupt data
        raise InvalidImage(f"cannot decode image: {type(exc).__name__}: {exc}") from None
