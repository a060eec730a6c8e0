"""A full disk or an output folder that cannot be written: one line and exit 1, never a traceback.

Nothing is counted as finished before the manifest is written, last, so a run that fails here is
simply run again (into the same folder) once there is room: it resumes from the request cache.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from factory.errors import RunFailed

_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})
# sqlite3 reports these without an errno
_SQLITE_STORAGE = ("disk is full", "readonly database", "unable to open database file", "disk i/o error")


def storage_problem(exc: BaseException) -> str | None:
    """What went wrong, in a few words, when `exc` is a storage failure; None for anything else."""
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return os.strerror(exc.errno)
    if isinstance(exc, sqlite3.OperationalError) and any(s in str(exc).lower() for s in _SQLITE_STORAGE):
        return str(exc)
    return None


@contextlib.contextmanager
def storage_errors_reported(out_dir: Path) -> Iterator[None]:
    try:
        yield
    except (OSError, sqlite3.OperationalError) as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise
        where = getattr(exc, "filename", None) or str(out_dir)
        raise RunFailed(f"cannot write the run's files: {problem}", where=str(where)) from None
