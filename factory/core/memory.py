"""Memory of the run's processes: the garbage collector paused where it only walks objects that hold no
cycles, and freed heap pages given back to the OS (each process of a run counts what it holds)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def frozen_gc(*, collect: bool = True) -> Iterator[None]:
    """Every object alive now is left out of the cyclic garbage collector until the block ends. A run
    holds a few hundred thousand long-lived objects (the modules of distilabel, datasets, pandas), and
    each full collection walked them all again: in every step worker forked from this process (most
    in the generate step) and in the export of 750,000 pairs, about a tenth of the CPU.

    `collect=False` also pauses collection for the block, for work that makes no reference cycles
    but holds many objects at once (the export's buffered records: each full collection walked them
    all and found nothing, a second at paper scale). Never around a fork: workers would inherit it."""
    gc.freeze()
    paused = not collect and gc.isenabled()
    if paused:
        gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()
        gc.unfreeze()


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
