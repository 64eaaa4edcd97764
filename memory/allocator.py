"""glibc's malloc, told to keep chunk-sized buffers out of the heap.

Chunk blobs and KV tensors are a few MB each and short-lived. glibc serves allocations above its mmap
threshold with mmap (returned to the OS on free), but it *raises* that threshold to the size of the
largest block freed so far; after the first multi-MB frees, later blobs come from the heap, fragment
it, and RSS steps up by hundreds of MB and stays there (measured: 435 -> 755 MB over a simulated
hour, docs/benchmarks.md). A fixed threshold (``mallopt(M_MMAP_THRESHOLD)``, which also turns the
adjustment off) keeps every buffer of 1 MiB or more on mmap. Set once per process that holds stream
KV (the encoder actor); a no-op where libc is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
DEFAULT_THRESHOLD = 1 << 20


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
