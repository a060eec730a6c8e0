"""A forked child dies with its parent (factory.core.parent_death), also where orphans go to a
subreaper rather than to pid 1."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

# The script makes itself a subreaper, forks A, and A forks G and exits at once. G waits until it is
# orphaned (its parent is then the subreaper, not pid 1), calls die_with_parent(A) and exits 0 only
# if it survived; the script prints G's exit code.
_ORPHAN_UNDER_A_SUBREAPER = """
import ctypes, os, time
from factory.core.parent_death import die_with_parent

ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
if os.fork() == 0:  # A
    a = os.getpid()
    if os.fork() == 0:  # G
        while os.getppid() == a:
            time.sleep(0.01)
        die_with_parent(a)
        os._exit(0)
    os._exit(0)
os.wait()  # A
_, status = os.wait()  # G, adopted
print(os.waitstatus_to_exitcode(status))
"""


def test_a_child_whose_parent_died_before_it_was_bound_exits_under_a_subreaper() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _ORPHAN_UNDER_A_SUBREAPER],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,  # a hang guard
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"  # it did not run on as an orphan of the subreaper


def test_a_child_of_a_live_parent_runs_on() -> None:
    from functools import partial
    from os import getpid

    from factory.core.parent_death import die_with_parent

    run = subprocess.run(
        [sys.executable, "-c", "print('running')"],
        preexec_fn=partial(die_with_parent, getpid()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (run.returncode, run.stdout) == (0, "running\n")
