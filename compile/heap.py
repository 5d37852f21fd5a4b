"""Freed tensors given back to the system, so a stage's peak is not the sum of every stage before it.

glibc's malloc serves a block from the heap or from its own mmap by a threshold that rises, after each
mmapped block is freed, up to 32 MB: past the first stage, a 1B model's tensors (2-32 MB each) come from
heap arenas, and freeing them leaves the arenas resident. Measured on a stories110M shape: the full model
dropped kept 0.43 GB of its 0.54 GB resident; with the threshold pinned at 1 MB, 0.23 GB. Pinned, every
block of a megabyte or more is its own mapping and goes back to the system when freed; `trim` returns what
the arenas hold free between stages. Only glibc has these calls; elsewhere both do nothing."""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 1 << 20


def _glibc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def pin_mmap_threshold() -> bool:
    """Blocks of MMAP_THRESHOLD_BYTES or more mmapped, always (setting it turns the rising threshold off)."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def trim() -> None:
    """Give the heap's free pages back to the system."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
