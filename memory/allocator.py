"""glibc's malloc and stream memory: keeping RSS flat over a long stream.

Chunk blobs and KV tensors are a few MB each and short-lived. glibc serves allocations above its mmap
threshold with mmap (returned to the OS on free), but it *raises* that threshold to the size of the
largest block freed so far; after the first multi-MB frees, later blobs come from the heap, fragment
it, and RSS steps up by hundreds of MB and stays there (measured: 435 -> 755 MB over a simulated
hour, docs/benchmarks.md).

Two cures, measured in bench/memory.py and bench/encode.py: a fixed mmap threshold
(``fix_mmap_threshold``) removes the step but makes every large activation of the vision tower an
mmap with fresh page faults (SmolVLM2-256M's vision pass 20 % slower); returning the heap's free
pages after each chunk write (``trim_heap``, glibc's ``malloc_trim``) removes the step as well and
leaves the model's allocations alone, so the encoder uses that. Both are no-ops where libc is not
glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
DEFAULT_THRESHOLD = 1 << 20


def _libc():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


_LIBC = _libc()


def trim_heap() -> bool:
    """Give the heap's free pages back to the OS (``malloc_trim(0)``); returns whether it ran."""
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def fix_mmap_threshold(nbytes: int = DEFAULT_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold at ``nbytes``; returns whether it was set."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) was refused", nbytes)
    return ok
