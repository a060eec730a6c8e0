"""A run's processes, as a person meets them: under a terminal it finishes, Ctrl-C stops it and says how
to resume, a SIGKILLed run leaves nothing running, one run per output folder, and a full or
read-only disk is one line and exit 1.

Runs that must be interrupted mid-generation talk to a server that holds requests (tests/support/held_server.py),
so each test acts on an event, whatever the machine's speed; the deadlines below only guard hangs.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from factory.backends.request_cache import count_answers
from factory.dataset.folder_check import check_folder
from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.support.held_server import HeldServer
from tests.support.pty_run import cli_env, new_tag, start_cli, tagged_processes
from tests.unit.factory.engine.test_engine import canned_recipe

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
HANG_GUARD_S = 240
CHATTY = "chatty step says hello"  # what tests.support.steps_for_tests:ChattyStep prints in its worker


@pytest.fixture(scope="module")
def server() -> Iterator[HeldServer]:
    with HeldServer() as srv:
        yield srv


def held_recipe(server: HeldServer) -> list[str]:
    """c2syn-demo against the held server: one row per generate batch, 5 requests per row."""
    sets = [
        "backends.local.kind=openai",
        f"backends.local.base_url={server.url}",
        "backends.local.model=bundled",
        "stages.generate.batch_size=1",
    ]
    return [arg for s in sets for arg in ("--set", s)]


def overrides(args: list[str]) -> list[str]:
    return args[1::2]


def gone_within(tag: str, seconds: float) -> list[psutil.Process]:
    """The processes of the run still alive after `seconds` (polled; a hang guard, not a timing)."""
    end = time.monotonic() + seconds
    while (left := tagged_processes(tag)) and time.monotonic() < end:
        time.sleep(0.2)
    return left


def run_cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory", *args],
        capture_output=True,
        text=True,
        env=cli_env(new_tag()),
        timeout=HANG_GUARD_S,
    )


def test_a_run_under_a_terminal_finishes_five_times_in_a_row(tmp_path: Path) -> None:
    # a worker that draws a tqdm bar and prints, as transformers' "Loading weights" bar did when the
    # generate worker hung on a display lock it had inherited
    recipe = canned_recipe(
        tmp_path, extra_stage={"name": "chatty", "step": "tests.support.steps_for_tests:ChattyStep"}
    )
    for attempt in range(5):
        out = tmp_path / f"out{attempt}"
        run = start_cli(["run", str(recipe), "--out", str(out), "--limit", "2", "--allow-import-steps"])
        try:
            assert run.finish(HANG_GUARD_S) == 0, run.text()[-3000:]
        finally:
            run.close()
        screen = ANSI.sub("", run.text())
        assert "rows: input 2" in screen and "Traceback" not in screen
        # the worker's output went to the run's log, never to the terminal
        assert CHATTY not in screen
        assert CHATTY in (out / ".work" / "workers.log").read_text()


def test_ctrl_c_stops_the_tree_says_how_to_resume_and_the_rerun_resumes(
    server: HeldServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["run", "c2syn-demo", "--limit", "3", "--out", str(out), *held_recipe(server)]
    server.answer_first(5)  # row 0's five requests; the first of row 1 is held
    run = start_cli(args)
    try:
        run.read_until(server.holding.is_set, HANG_GUARD_S)
        assert len(run.processes()) >= 3, "the main process and its workers"

        second = run_cli(args)  # a second run into the same folder meanwhile
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"error: {out}: another run (pid {run.pid}) is writing to this folder; "
            "wait for it to end or choose another --out"
        ]

        run.type(b"\x03")  # Ctrl-C
        assert run.finish(HANG_GUARD_S) == 130
        assert gone_within(run.tag, 10) == []
    finally:
        run.close()
    screen = ANSI.sub("", run.text())
    assert "Traceback" not in screen
    last = screen.strip().splitlines()[-1]
    assert last == (
        f"interrupted: {out}: stopped; 5 answered LLM requests are kept in "
        f"{out / '.work' / 'requests.sqlite'}: run the same command again to resume"
    )
    assert not (out / "manifest.json").exists()

    server.release()
    resumed = run_recipe(load_recipe("c2syn-demo", overrides(held_recipe(server)), limit=3), out)
    assert resumed.manifest.stages["generate"].cached_calls == 5
    assert resumed.manifest.counts.input == 3
    assert check_folder(out).ok


def test_sigterm_stops_the_run_as_ctrl_c_does_and_the_rerun_resumes(
    server: HeldServer, tmp_path: Path
) -> None:
    """`kill PID` or a scheduler's stop: the same orderly stop as Ctrl-C, exit 128 + SIGTERM."""
    import signal

    out = tmp_path / "out"
    args = ["run", "c2syn-demo", "--limit", "2", "--out", str(out), *held_recipe(server)]
    server.answer_first(5)
    run = start_cli(args)
    try:
        run.read_until(server.holding.is_set, HANG_GUARD_S)
        os.kill(run.pid, signal.SIGTERM)  # the main process only, as `kill PID` does
        assert run.finish(HANG_GUARD_S) == 128 + signal.SIGTERM
        assert gone_within(run.tag, 10) == []
    finally:
        run.close()
    screen = ANSI.sub("", run.text())
    assert "Traceback" not in screen
    assert "stopping (signal again to kill at once)" in screen
    assert screen.strip().splitlines()[-1] == (
        f"interrupted: {out}: stopped; 5 answered LLM requests are kept in "
        f"{out / '.work' / 'requests.sqlite'}: run the same command again to resume"
    )
    server.release()
    resumed = run_recipe(load_recipe("c2syn-demo", overrides(held_recipe(server)), limit=2), out)
    assert resumed.manifest.stages["generate"].cached_calls == 5
    assert check_folder(out).ok


def test_a_second_ctrl_c_kills_a_run_whose_stop_is_stuck(tmp_path: Path) -> None:
    marker = tmp_path / "stuck"
    stuck = {
        "name": "stuck",
        "step": "tests.support.steps_for_tests:StuckStep",
        "params": {"marker": str(marker)},
    }
    recipe = canned_recipe(tmp_path, extra_stage=stuck)
    run = start_cli(
        ["run", str(recipe), "--out", str(tmp_path / "out"), "--limit", "1", "--allow-import-steps"]
    )
    try:
        run.read_until(marker.exists, HANG_GUARD_S)
        run.type(b"\x03")  # the stop waits for a worker that ignores SIGTERM ...
        run.read_until(lambda: "stopping" in run.text(), HANG_GUARD_S)
        run.type(b"\x03")  # ... until the second Ctrl-C
        assert run.finish(HANG_GUARD_S) == 130
        assert gone_within(run.tag, 10) == []
    finally:
        run.close()
    assert ANSI.sub("", run.text()).strip().splitlines()[-1] == "killed"


def test_a_sigkilled_run_leaves_no_process_and_its_lock_is_taken_over(
    server: HeldServer, tmp_path: Path
) -> None:
    # no terminal here: a dying session leader's SIGHUP would end the workers and hide the orphans
    out, tag = tmp_path / "out", new_tag()
    server.answer_first(0)
    args = ["run", "c2syn-demo", "--limit", "2", "--out", str(out), *held_recipe(server)]
    run = subprocess.Popen(
        [sys.executable, "-m", "factory", *args],
        env=cli_env(tag),
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert server.holding.wait(HANG_GUARD_S)
        assert len(tagged_processes(tag)) >= 3, "the main process and its workers"
        run.kill()  # SIGKILL, the main process only
        run.wait()
        assert gone_within(tag, 5) == []
    finally:
        for proc in tagged_processes(tag):
            proc.kill()
    assert (out / ".work" / "run.lock").read_text().strip() == str(run.pid)  # stale: its owner is dead

    server.release()
    again = run_recipe(load_recipe("c2syn-demo", overrides(held_recipe(server)), limit=2), out)
    assert again.manifest.counts.input == 2
    assert check_folder(out).ok


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of its own (a 64 MiB tmpfs) that a test can fill or make read-only."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Write a file until the filesystem is full; removing it frees the space again."""
    filler = disk / "filler"
    with filler.open("wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


@pytest.mark.parametrize("fills", ["before the run", "while it generates"])
def test_a_full_disk_is_one_line_and_exit_1_and_the_next_run_resumes(
    server: HeldServer, small_disk: Path, fills: str
) -> None:
    out = small_disk / "out"
    args = ["run", "c2syn-demo", "--limit", "3", "--out", str(out), *held_recipe(server)]
    server.answer_first(5)  # row 0's five requests; the first of row 1 is held
    filler = fill(small_disk) if fills == "before the run" else None
    run = subprocess.Popen(
        [sys.executable, "-m", "factory", *args], env=cli_env(new_tag()), stderr=subprocess.PIPE, text=True
    )
    try:
        if filler is None:
            assert server.holding.wait(HANG_GUARD_S)
            # rows are generated side by side, so the held request can come before row 0's answers are
            # stored: fill the disk once those five answers are committed (the polling only waits for
            # an event; its deadline turns a hang into a failure)
            store, deadline = out / ".work" / "requests.sqlite", time.monotonic() + HANG_GUARD_S
            while count_answers(store) < 5:
                assert time.monotonic() < deadline, "row 0's answers were never stored"
                time.sleep(0.05)
            filler = fill(small_disk)
        server.release()
        _, stderr = run.communicate(timeout=HANG_GUARD_S)
    finally:
        run.kill()
    assert run.returncode == 1
    assert stderr.strip().splitlines() == [
        f"error: {out}: cannot write the run's files: No space left on device"
    ]
    assert not (out / "manifest.json").exists()  # nothing counts as finished
    kept = count_answers(out / ".work" / "requests.sqlite")
    assert kept == (0 if fills == "before the run" else 5)

    filler.unlink()  # room again
    resumed = run_recipe(load_recipe("c2syn-demo", overrides(held_recipe(server)), limit=3), out)
    assert resumed.manifest.stages["generate"].cached_calls == kept
    assert check_folder(out).ok


def test_a_read_only_output_folder_is_one_line_and_exit_1(server: HeldServer, small_disk: Path) -> None:
    server.release()
    finished = small_disk / "finished"
    args = ["run", "c2syn-demo", "--limit", "1", *held_recipe(server)]
    assert run_cli([*args, "--out", str(finished)]).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for out in (small_disk / "new", finished):  # a folder to create, a finished run to redo
        result = run_cli([*args, "--out", str(out)])
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"error: {out}: cannot write the run's files: Read-only file system"
        ]
    assert check_folder(finished).ok  # the earlier run is untouched


def test_a_failed_run_gives_the_thread_exception_hook_back(tmp_path: Path) -> None:
    """A failed run quietens the deaths of library threads waiting on its stopped workers, for that
    run only: afterwards a crashing thread of the process is reported again."""
    import threading

    before = threading.excepthook
    broken = {"name": "broken", "step": "tests.support.steps_for_tests:FailsToLoad"}
    recipe = load_recipe(str(canned_recipe(tmp_path, extra_stage=broken)))
    with pytest.raises(RuntimeError, match="Failed to load all the steps"):
        run_recipe(recipe, tmp_path / "out", allow_import_steps=True)
    assert threading.excepthook is before
