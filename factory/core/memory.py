"""Giving freed memory back to the OS, for processes whose resident size is counted (every process of
a run: distilabel forks one per step, and each counts what it holds)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def release_freed_memory() -> None:
    """Return the heap pages freed so far to the OS. glibc keeps freed pages mapped: 50,000 source rows
    left ~120 MB behind in the engine (copied into every forked step), and a tokenizer loaded and dropped
    by a stage ~30 MB."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)  # glibc only; elsewhere nothing to do
        if trim is not None:
            trim(0)
