"""The C allocator of a node process: freed memory is kept for reuse, not handed back.

A node moves results a frame at a time: a compute node builds each ~1 MiB frame out of
a chunk of its outputs (the chunk, its msgpack body, the frame: three such buffers live
at once), a requester reads up to 16 MiB at a time. With glibc's default, adaptive
thresholds, freeing those buffers leaves more than twice the largest of them free at the
top of the heap, so glibc gives it back to the kernel, and the next frame takes it again:
about 25,000 page faults per 100 MiB result on a compute node, each a fresh page the
kernel must zero (and, on a VM that hands free memory back to its host, the host must
supply). ``keep_freed_memory`` fixes both thresholds: buffers up to ``MMAP_THRESHOLD``
come from the heap, and up to ``TRIM_THRESHOLD`` of free heap is kept. Measured on the
project VM (docs/BENCHMARKS.md, 2026-11-29 night): a compute node's page faults per 100 MiB
result went from 17,000-29,000 to ~500, and its CPU per result down by 0.05-0.08 s (about
a tenth); each process holds ~5 MiB more once results have gone through it.

Only glibc has these knobs (``mallopt``); elsewhere, and when the user set glibc's own
``MALLOC_*`` variables, nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # the most glibc allows (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 64 * 1024 * 1024
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")


def keep_freed_memory() -> bool:
    """Fix glibc's thresholds as above; whether they were set."""
    if platform.libc_ver()[0] != "glibc" or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
