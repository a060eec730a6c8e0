"""`safepref eval` on managed servers: one model copy at a time, held by a server the eval started and
stopped (on success, on Ctrl-C, when it fails to start), and the open C²-Eval turn sent to it unclosed."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.support.held_server import HeldServer
from tests.support.processes import alive, children, cmdline, weight_holders

SERVE = "transformers.cli.transformers serve"
C2_SMALL = ["--rows", "1", "--samples", "1", "--k", "10", "--max-new-tokens", "4"]


def _eval(*args: str, record: Path | None = None) -> subprocess.Popen[str]:
    # a run's own channels (stop file, servers, progress) are never inherited from an earlier test's run
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("SAFEPREF_") or k == "SAFEPREF_CACHE"
    }
    # faulthandler: a stuck eval asked to abort (SIGABRT) prints every thread's stack
    env = {**inherited, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "PYTHONFAULTHANDLER": "1"}
    if record is not None:
        env["STANDIN_RECORD"] = str(record)
    return subprocess.Popen(
        [sys.executable, "-m", "factory", "eval", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like a terminal: Ctrl-C goes to the eval's whole process group
    )


def _model_copy(target: Path) -> Path:
    """The bundled model under a path of our own (other runs on this host map the shared folder)."""
    from factory.core.models import bundled_model_dir

    try:
        shutil.copytree(bundled_model_dir(), target, copy_function=os.link)  # no second 260 MB on disk
    except OSError:
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(bundled_model_dir(), target)
    return target


def _wait_until_judging(run: subprocess.Popen[str], judge: HeldServer) -> None:
    while not judge.holding.wait(timeout=0.1):
        assert run.poll() is None, run.communicate()


def _servers(run: subprocess.Popen[str]) -> list[int]:
    return [pid for pid in children(run.pid) if SERVE in cmdline(pid)]


@pytest.mark.slow
def test_an_eval_serves_one_model_copy_at_a_time_and_leaves_no_server(tmp_path: Path) -> None:
    first, second = _model_copy(tmp_path / "model-a"), _model_copy(tmp_path / "model-b")
    with HeldServer() as judge:
        judge.answer_first(0)  # every judge request waits: the eval is provably past generating
        run = _eval(
            "c2", "--model", str(first), "--model", str(second), *C2_SMALL,
            "--judge", f"openai:{judge.url}@judge", "--out", str(tmp_path / "eval"),
        )  # fmt: skip
        try:
            _wait_until_judging(run, judge)
            servers = _servers(run)
            assert len(servers) == 1 and str(second) in cmdline(servers[0])
            # the first model's server was stopped before the second's started; the eval holds no weights
            assert weight_holders(first / "model.safetensors") == set()
            assert weight_holders(second / "model.safetensors") == set(servers)
            judge.release()
            out, err = run.communicate(timeout=600)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert run.returncode == 0, err
    assert "server model-a: ready in" in out and "server model-b: ready in" in out
    assert not alive(servers[0])
    assert not [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and str(second) in cmdline(int(p.name))
    ]
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert [m["judged_at"] for m in report["models"]] == [{"10": 1}, {"10": 1}]


@pytest.mark.slow
def test_ctrl_c_during_an_eval_stops_its_server(tmp_path: Path) -> None:
    model = _model_copy(tmp_path / "model")
    with HeldServer() as judge:
        judge.answer_first(0)
        run = _eval(
            "c2", "--model", str(model), *C2_SMALL, "--judge", f"openai:{judge.url}@judge",
            "--out", str(tmp_path / "eval"),
        )  # fmt: skip
        try:
            _wait_until_judging(run, judge)
            (server,) = _servers(run)
            os.killpg(run.pid, signal.SIGINT)
            # the server stops (SIGTERM, SIGKILL after 20 s) while the eval still waits on the external
            # judge's held request: the stop does not depend on that endpoint
            deadline = time.monotonic() + 120
            while alive(server):
                if time.monotonic() > deadline:
                    os.kill(run.pid, signal.SIGABRT)
                    _, stacks = run.communicate(timeout=60)
                    raise AssertionError(
                        f"the server outlived Ctrl-C; the eval's threads:\n{stacks[-12000:]}"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    run.wait(timeout=0.1)
            judge.release()  # the external endpoint answers at last: the eval can exit
            out, err = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
                run.wait()
    assert run.returncode == 130, (run.returncode, out, err)
    assert err.splitlines() == [
        f"interrupted: {tmp_path / 'eval'}: the stored answers and verdicts are kept; run the same "
        "command again to resume"
    ]
    assert weight_holders(model / "model.safetensors") == set()


def test_a_server_that_fails_to_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    die = f"{sys.executable} -c 'print(\"CUDA error: no device\"); raise SystemExit(3)'"
    out = tmp_path / "eval"
    run = _eval("c2", "--model", "bundled", *C2_SMALL, "--server-command", die, "--out", str(out))
    _, err = run.communicate(timeout=300)
    assert run.returncode == 1
    assert err.splitlines() == [
        f"error: --model bundled: {sys.executable} -c of model 'bundled' exited with code 3 before it was "
        f"ready: CUDA error: no device (log: {out / '.work' / 'server-bundled.log'})"
    ]


def test_c2_eval_on_an_sglang_server_sends_the_open_turn_it_renders(tmp_path: Path) -> None:
    """`--server sglang` with a stand-in that serves SGLang's flags and endpoints over real HTTP (SGLang
    is not installed here): the eval starts it, waits, sends each path's prompt rendered here with the
    prefill left open, and stops it."""
    record, out = tmp_path / "standin.jsonl", tmp_path / "eval"
    standin = f"{sys.executable} {REPO / 'tests' / 'support' / 'sglang_standin.py'}"
    run = _eval(
        "c2", "--model", "bundled", "--rows", "2", "--samples", "2", "--k", "10,20", "--max-new-tokens", "4",
        "--server", "sglang", "--server-command", standin, "--server-arg=--enable-metrics",
        "--concurrency", "4", "--out", str(out), record=record,
    )  # fmt: skip
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    start, requests = entries[0], entries[2:]  # then the warm-up request
    assert start["argv"][-1] == "--enable-metrics" and "--max-running-requests" not in " ".join(start["argv"])
    assert not alive(start["pid"])
    samples = [json.loads(line) for line in (out / "bundled" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == len(requests) == 8
    prompts = {r["body"]["prompt"] for r in requests}
    for sample in samples:  # each path's prompt ends with its forced prefix: the assistant turn is open
        assert sum(p.endswith("<|im_start|>assistant\n" + sample["prefill"]) for p in prompts) == 1
    assert all(isinstance(r["body"]["seed"], int) for r in requests)
