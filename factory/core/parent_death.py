"""A child process that dies with its parent, however the parent dies (SIGKILL included): the step
workers a run forks (factory.engine.processes) and the model servers it starts
(factory.backends.managed_server)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """In a child just forked by `parent_pid`, before it runs anything else (or between fork and exec):
    be SIGKILLed when the thread that forked it ends, and exit at once if the parent is already gone
    (it died before prctl took effect). Compared with the forking pid, not with 1: an orphan's new
    parent is a subreaper when there is one (systemd --user, tini, a container's init)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
