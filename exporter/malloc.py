"""glibc's malloc told to hand large freed blocks back to the system (docs/architecture.md, "Reading
replies").

glibc serves a request of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB to start) with a mapping of
its own, returned to the system when freed. But freeing such a block *raises* the threshold to the
block's size (up to 32 MiB), so that later blocks of that size come from the heap, whose freed
memory mostly stays with the process. After a stretch of 16 MiB replies (a refused gzip bomb is one)
the exporter's RSS stayed tens of MB up for good (``bench/bombs.py``; docs/bench.md, "Memory under
gzip bombs"). Setting the threshold turns that adjustment off.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
# Above the 256 KiB pieces replies are inflated in, which then come from the heap and are reused
# rather than mapped and unmapped each time (about a quarter of the CPU a refused bomb costs, at
# 128 KiB); below the buffer of any reply larger than a page of a few hundred runs.
MMAP_THRESHOLD = 1024 * 1024


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold for this process; False where there is no glibc (musl, macOS) or
    the environment already set it (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES``: an operator's
    choice wins)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- glibc's alone: musl has a mallopt that does nothing
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
