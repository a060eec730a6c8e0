"""The process model of a run: only the main process writes to the terminal, workers die with it,
and Ctrl-C stops the run.

Why (measured under a pty, 1 hang in 4 runs): distilabel 1.5.3 forks its step workers
(`multiprocessing` with the platform default, fork) while rich's live display runs in a thread and
has replaced `sys.stdout`/`sys.stderr` with proxies that print through its console. A worker inherits
the display's locks in whatever state that thread held them at the fork; when transformers drew its
"Loading weights" bar in the generate worker, the write went through the proxy into
`rich/live.py process_renderables`, which waited for ever on a lock no thread of the worker would
release (stack taken with faulthandler). With output piped, rich neither redirects nor refreshes, so
it never hung there. So every process forked while a run is active:

- writes nowhere near the terminal: its fds 1 and 2 and fresh `sys.stdout`/`sys.stderr` point at
  `DIR/.work/workers.log`, and logging handlers that held the old streams follow them, so nothing in
  a worker can reach the display or its locks; progress bars are off besides (tqdm, huggingface_hub,
  datasets), the run's own display shows progress from the events the steps append
  (factory.core.progress);
- dies with its parent, however the parent dies (prctl PR_SET_PDEATHSIG), so a SIGKILLed run leaves
  nothing running.

The main process owns SIGINT, and SIGTERM sent to it (`kill PID`, a scheduler's stop) stops the run
the same way (exit 143 instead of 130): the first Ctrl-C ends the workers and raises `RunInterrupted`; the
requests in flight are abandoned, and so are answers that had arrived but were still queued in a
stage's client, not yet stored (the request cache holds what the stages had taken); the re-run asks
for those again. A second Ctrl-C, while that stop is under way, kills every process of the run at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import psutil

from factory.core.env import env_vars
from factory.core.parent_death import die_with_parent

WORKER_LOG = "workers.log"
# Off in the main process too: its own display is the only progress shown (datasets' "Generating
# train split" bar used to break into it).
_QUIET_ENV = {
    "TQDM_DISABLE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
}
_SHOW_CURSOR = b"\x1b[?25h"
# after SIGTERM, how long workers get to exit before SIGKILL (they hold nothing that needs saving)
_STOP_GRACE_S = 3.0


class RunInterrupted(KeyboardInterrupt):
    """The user stopped the run with Ctrl-C; the CLI exits 130. A KeyboardInterrupt, so that no
    library's `except Exception` swallows it on its way up."""


_log_path: Path | None = None  # set while a run is active in this process (or its forked parent)
_forker_pid = 0
_fork_hooks_installed = False
_interrupts = 0
_stop_signal: int = signal.SIGINT  # what stopped the run: its exit status is 128 + this


def _remember_forker() -> None:
    global _forker_pid
    _forker_pid = os.getpid()


def _bind_child_to_run() -> None:
    """In a process just forked during a run, before any other code of the child runs."""
    if _log_path is None:
        return
    # Linux sends the signal when the thread that forked this process ends: distilabel's pool
    # forks from the main thread (or from its pool thread, which ends with the pool)
    die_with_parent(_forker_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides what Ctrl-C does
    # SIGTERM is how a pool ends its workers (Pool.terminate): the main process's handler, inherited
    # through the fork, would raise RunInterrupted inside a worker holding the pool's queue lock
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        fd = os.open(_log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:  # e.g. a full disk: losing a worker's stray output beats a stuck worker
        fd = os.open(os.devnull, os.O_WRONLY)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    old = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    sys.stdout, sys.stderr = _line_buffered(1), _line_buffered(2)
    handlers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for logger in handlers:
        for handler in logger.handlers:
            # assigned, not setStream(): that would flush the old stream, i.e. enter the display
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in old:
                handler.stream = sys.stderr


def _line_buffered(fd: int) -> Any:
    # lives as long as the process, like the stream it replaces
    return open(fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115


def run_descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.Error:
        return []


def _kill(procs: list[psutil.Process], sig: int) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _quiet_thread_deaths(args: Any) -> None:
    """After an interrupt or a failed run, library threads that waited on the stopped workers may die
    with errors; their tracebacks are expected and would only bury the one line that matters (the
    threads on distilabel's queues end quietly: distilabel_compat)."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C, or SIGTERM (a scheduler's or `kill`'s stop): the same orderly stop, exit 128 + signum."""
    global _interrupts, _stop_signal
    _interrupts += 1
    if _interrupts > 1:  # the second Ctrl-C: no more waiting
        _kill(run_descendants(), signal.SIGKILL)
        # straight to the terminal, below the display (which never gets to stop, so its hidden
        # cursor is shown again here)
        os.write(2, (_SHOW_CURSOR if os.isatty(2) else b"") + b"\nkilled\n")
        os._exit(128 + _stop_signal)
    _stop_signal = signum
    threading.excepthook = _quiet_thread_deaths
    again = "Ctrl-C again" if signum == signal.SIGINT else "signal again"
    sys.stderr.write(f"\nstopping ({again} to kill at once)…\n")
    # Unwinding lets distilabel terminate its own pool: killing its workers behind its back first
    # made Pool.terminate() wait for ever on a queue lock a killed worker held.
    raise RunInterrupted


def _end(procs: list[psutil.Process]) -> None:
    _kill(procs, signal.SIGTERM)
    _, alive = psutil.wait_procs(procs, timeout=_STOP_GRACE_S)
    _kill(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=_STOP_GRACE_S)


def exit_interrupted(message: str) -> NoReturn:
    """The CLI's end of an interrupted run: one line, exit 130 (143 for SIGTERM). Not sys.exit: distilabel's threads
    that waited on the stopped workers must not hold up the exit."""
    sys.stdout.flush()
    sys.stderr.write(f"interrupted: {message}\n")
    sys.stderr.flush()
    os._exit(128 + _stop_signal)  # 130 after Ctrl-C, 143 after SIGTERM


@contextlib.contextmanager
def resume_hint_on_interrupt(out_dir: Path, request_cache: Path) -> Iterator[None]:
    """Turn an interrupt into the one line a user needs: what was kept and how to go on."""
    try:
        yield
    except RunInterrupted:
        from factory.backends.request_cache import count_answers

        raise RunInterrupted(
            f"{out_dir}: stopped; {count_answers(request_cache)} answered LLM requests are kept in "
            f"{request_cache}: run the same command again to resume"
        ) from None


@contextlib.contextmanager
def run_processes(work_dir: Path) -> Iterator[None]:
    """While the block runs, processes forked from this one are quiet workers bound to it, and the
    main thread's SIGINT follows the rules above. Nests as a no-op inside itself."""
    global _log_path, _fork_hooks_installed, _interrupts, _stop_signal
    if _log_path is not None:
        yield
        return
    if not _fork_hooks_installed:  # fork hooks cannot be removed: they check `_log_path` instead
        os.register_at_fork(before=_remember_forker, after_in_child=_bind_child_to_run)
        _fork_hooks_installed = True
    work_dir.mkdir(parents=True, exist_ok=True)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_handlers = (
        {sig: signal.signal(sig, _on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
        if in_main_thread
        else {}
    )
    previous_hook = threading.excepthook  # quietened once the run fails or is interrupted
    _log_path, _interrupts, _stop_signal = work_dir / WORKER_LOG, 0, signal.SIGINT
    try:
        with env_vars(_QUIET_ENV):
            yield
    except KeyboardInterrupt:
        _end(run_descendants())  # whatever the pipeline's own teardown left running
        raise
    except BaseException:
        threading.excepthook = _quiet_thread_deaths  # the run failed: its error line is what counts
        raise
    finally:
        _log_path = None
        threading.excepthook = previous_hook
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
