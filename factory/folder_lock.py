"""One run per output folder: `DIR/.work/run.lock`, held with flock(2) and naming its owner's pid.

Two runs writing one folder destroyed each other's files (seen: 6 of 6 trials crashed). The kernel
drops an flock when its holder dies, however it dies, so a lock left behind by a killed run is
stale by construction and the next run simply takes it; the pid written inside only tells a
refused run who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from factory.errors import UserError

LOCK_NAME = "run.lock"


@contextlib.contextmanager
def hold_output_folder(out_dir: Path, work_dir: Path) -> Iterator[None]:
    """Hold `work_dir/run.lock` for the block; a second holder gets a UserError (exit 2) at once."""
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(
                f"another run (pid {owner}) is writing to this folder; wait for it to end or choose another --out",
                where=str(out_dir),
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a new holder)
