"""A full disk or an output folder that cannot be written: one line and exit 1, never a traceback.

Nothing is counted as finished before the manifest is written, last, so a run that fails here is
simply run again (into the same folder) once there is room: it resumes from the request cache.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from factory.core.errors import RunFailed

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
    """Report a storage failure of the block, or of any thread it started (distilabel writes its
    batches from a thread of its own, which died with ENOSPC and left the run to fail later with an
    unrelated KeyError), as RunFailed."""
    failures: list[BaseException] = []
    previous_hook, raise_logging_errors = threading.excepthook, logging.raiseExceptions

    def record(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and storage_problem(args.exc_value) is not None:
            failures.append(args.exc_value)
        elif not failures:  # after a storage failure, threads that waited on the run die with it
            previous_hook(args)

    threading.excepthook = record
    # a log handler that cannot write (distilabel's pipeline.log) must not print its own traceback
    logging.raiseExceptions = False
    try:
        yield
    except BaseException as exc:
        if storage_problem(exc) is not None:
            raise _failed(exc, out_dir) from None
        if failures and not isinstance(exc, KeyboardInterrupt):
            raise _failed(failures[0], out_dir) from None
        raise
    finally:
        logging.raiseExceptions = raise_logging_errors
        if threading.excepthook is record:  # a failed run's block quiets dying threads: keep that
            threading.excepthook = previous_hook
    if failures:
        raise _failed(failures[0], out_dir)


def _failed(exc: BaseException, out_dir: Path) -> RunFailed:
    return RunFailed(f"cannot write the run's files: {storage_problem(exc)}", where=str(out_dir))
