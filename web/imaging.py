"""Pushed frames (JPEG / PNG bytes) to RGB arrays, with the limits that keep a gateway safe.

Decoding happens here, at the edge, so the encoder only ever sees small RGB arrays: frames are
shrunk to ``max_side`` (the vision tower resizes to 384 anyway) before they cross to Ray.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from .protocol import BAD_IMAGE, TOO_LARGE, ProtocolError

FORMATS = {"JPEG", "PNG", "WEBP"}
MAX_PIXELS = 4096 * 4096  # decompression-bomb guard: a 4 MiB PNG can claim gigapixels


def decode_image(data: bytes, *, max_side: int = 512, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB from JPEG / PNG / WebP bytes; ProtocolError for anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.format not in FORMATS:
                raise ProtocolError(BAD_IMAGE, f"image format {im.format} is not JPEG or PNG")
            w, h = im.size
            if w * h > max_pixels:
                raise ProtocolError(TOO_LARGE, f"image of {w}x{h} pixels exceeds {max_pixels} pixels")
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when possible
            im = im.convert("RGB")
            if max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except ProtocolError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ProtocolError(TOO_LARGE, f"image too large: {exc}") from None
    except Exception as exc:  # PIL raises many types for corrupt data
        raise ProtocolError(BAD_IMAGE, f"cannot decode image: {type(exc).__name__}: {exc}") from None
