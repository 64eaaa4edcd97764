"""Spotting disposable H.264 pictures from packet bytes, so the decoder never has to see them.

A picture whose slices have ``nal_ref_idc == 0`` is referenced by no other picture (typically most
B-frames). When such a packet's pts is before the next sampling slot it can never be kept, and since
nothing depends on it, not decoding it changes no other frame: the output stays exact while decoding
does less work. FFmpeg's ``skip_frame=NONREF`` would also drop the non-reference frames we need to keep.
"""

from __future__ import annotations

from collections.abc import Callable

_SLICE = 1  # non-IDR slice; IDR slices (5) are always reference pictures


def disposable_checker(codec_name: str, extradata: bytes | None) -> Callable[[bytes], bool] | None:
    """A predicate ``bytes -> True if the packet is a non-reference picture``, or None if unsupported."""
    if codec_name != "h264":
        return None
    if extradata and len(extradata) > 4 and extradata[0] == 1:  # avcC: length-prefixed NAL units
        size = (extradata[4] & 3) + 1
        return lambda data: _avcc_disposable(data, size)
    return _annexb_disposable  # start-code delimited (MPEG-TS, raw .h264)


def _avcc_disposable(data: bytes, size: int) -> bool:
    pos, end = 0, len(data)
    while pos + size < end:
        length = int.from_bytes(data[pos : pos + size], "big")
        header = data[pos + size]
        kind = header & 0x1F
        if kind == _SLICE:
            return header & 0x60 == 0
        if kind == 5:
            return False
        pos += size + length
    return False


def _annexb_disposable(data: bytes) -> bool:
    pos = data.find(b"\x00\x00\x01")
    while 0 <= pos < len(data) - 3:
        header = data[pos + 3]
        kind = header & 0x1F
        if kind == _SLICE:
            return header & 0x60 == 0
        if kind == 5:
            return False
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False
