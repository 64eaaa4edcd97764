"""Pushed frames (JPEG / PNG bytes) to RGB arrays, as the protocol's errors.

Decoding happens here, at the edge, so the encoder only ever sees small RGB arrays: frames are
shrunk to ``max_side`` (the vision tower resizes to 384 anyway) before they cross to Ray. The rule
(formats, size limits, EXIF orientation) is ingest/images.py's; this names its refusals in protocol
codes.
"""

from __future__ import annotations

import numpy as np

from scenekv.defaults import VISION_MAX_SIDE
from scenekv.ingest.errors import ImageTooLarge, InvalidImage
from scenekv.ingest.images import MAX_PIXELS
from scenekv.ingest.images import decode_image as decode_upright

from .protocol import BAD_IMAGE, TOO_LARGE, ProtocolError


def decode_image(data: bytes, *, max_side: int = VISION_MAX_SIDE, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright, from JPEG / PNG / WebP bytes; ProtocolError for anything else."""
    try:
        return decode_upright(data, max_side=max_side, max_pixels=max_pixels)
    except ImageTooLarge as exc:
        raise ProtocolError(TOO_LARGE, str(exc)) from None
    except InvalidImage as exc:
        raise ProtocolError(BAD_IMAGE, str(exc)) from None
