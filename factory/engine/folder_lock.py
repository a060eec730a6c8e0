"""One run per output folder: `DIR/.work/run.lock`, held with flock(2) and naming its owner's pid.

Two runs writing one folder destroyed each other's files (seen: 6 of 6 trials crashed). The kernel
drops an flock when its last holder dies, however it dies, so a lock left behind by a killed run
is stale by construction and the next run takes it; the pid written inside tells a refused run who
holds it, and whether that run is still alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from factory.core.errors import UserError

LOCK_NAME = "run.lock"
_DEAD_RUN_WAIT_S = 30.0


@contextlib.contextmanager
def hold_output_folder(out_dir: Path, work_dir: Path) -> Iterator[None]:
    """Hold `work_dir/run.lock` for the block; while a live run holds it, a UserError (exit 2)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _take(fd, out_dir)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race a new holder)


def _take(fd: int, out_dir: Path) -> None:
    # The workers of a run share its lock (forked with the descriptor). Right after a run was
    # killed, they may still be dying (PR_SET_PDEATHSIG): then the lock is theirs for a moment, and
    # it is waited for, a bounded time.
    deadline = time.monotonic() + _DEAD_RUN_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            alive = owner.isdigit() and _alive(int(owner))
            if alive or time.monotonic() > deadline:
                state = "" if alive else " (ended; its processes still hold the folder)"
                raise UserError(
                    f"another run (pid {owner or 'unknown'}{state}) is writing to this folder; "
                    "wait for it to end or choose another --out",
                    where=str(out_dir),
                ) from None
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
