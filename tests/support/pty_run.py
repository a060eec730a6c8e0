"""Run the `safepref` CLI under a real pseudo-terminal, the way a person runs it.

A run that finishes with its output piped can still hang under a terminal (a rich live display owns
the terminal then), so these helpers give the child a pty as its controlling terminal: Ctrl-C is the
byte 0x03 typed into it, and the terminal driver signals the foreground process group, as in a shell.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
CTRL_C = b"\x03"
# Marks every process of a run (children inherit the environment), so a test can find them all,
# including those that outlived the main process and were re-parented.
RUN_TAG = "SAFEPREF_TEST_RUN_TAG"


@dataclass
class PtyRun:
    pid: int
    master: int
    tag: str
    output: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None

    def text(self) -> str:
        return self.output.decode("utf-8", "replace")

    def read_until(self, done: Callable[[], bool], deadline_s: float) -> None:
        """Collect output until `done()` or the child exits; the deadline is only a hang guard."""
        end = time.monotonic() + deadline_s
        while not done() and self.exit_code is None:
            if time.monotonic() > end:
                raise AssertionError(
                    f"hang guard: nothing happened for {deadline_s} s:\n{self.text()[-3000:]}"
                )
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                self.output += chunk
                if not chunk:
                    self.wait()
            self.poll()

    def poll(self) -> None:
        if self.exit_code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.exit_code = os.waitstatus_to_exitcode(status)
                self._drain()

    def _drain(self) -> None:
        """What the child wrote before it exited is still in the terminal's buffer."""
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def wait(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        self.exit_code = os.waitstatus_to_exitcode(status)
        self._drain()
        return self.exit_code

    def finish(self, deadline_s: float) -> int:
        self.read_until(lambda: False, deadline_s)
        assert self.exit_code is not None
        return self.exit_code

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def processes(self) -> list[psutil.Process]:
        return tagged_processes(self.tag)

    def close(self) -> None:
        """Leave nothing behind even when the test failed."""
        for proc in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait()
        os.close(self.master)


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Every live process of the run tagged `tag` (main and descendants, re-parented ones too)."""
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.pid != os.getpid() and proc.environ().get(RUN_TAG) == tag and proc.status() != "zombie":
                found.append(proc)
    return found


def cli_env(tag: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p),
        "OMP_NUM_THREADS": "1",
        RUN_TAG: tag,
        **extra,
    }


def new_tag() -> str:
    return f"{os.getpid()}-{time.monotonic_ns()}"


def start_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> PtyRun:
    """Start `python -m factory ARGS` on a new pseudo-terminal (120x40, TERM=xterm)."""
    tag = new_tag()
    child_env = cli_env(tag, TERM="xterm", COLUMNS="120", LINES="40", **(env or {}))
    pid, master = pty.fork()
    if pid == 0:  # the child: a session leader whose controlling terminal is the pty
        try:
            if cwd is not None:
                os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "factory", *args], child_env)
        finally:
            os._exit(127)
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    return PtyRun(pid=pid, master=master, tag=tag)
