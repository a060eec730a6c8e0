"""An LLM stage keeps its backend's whole window in flight across the recipe's batches (no batch
barrier), and its progress line shows the tokens generated and the requests in flight."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.paced_server import PacedServer
from factory.core.progress import PROGRESS_FILE_ENV as PROGRESS_ENV
from factory.core.progress import ProgressState
from factory.engine.recipe import load_recipe
from factory.engine.run import RunResult, run_recipe

WINDOW = 16
GATE_LIMIT_S = 300  # only reached when the window never fills, i.e. when the test fails


@dataclass
class WindowRun:
    result: RunResult
    server: PacedServer
    events: list[dict[str, object]]
    in_flight_reported: bool


def _progress_shows(path: Path, stage: str, in_flight: int) -> bool:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return any(e.get("stage") == stage and e.get("in_flight") == in_flight for e in events)


@pytest.fixture(scope="module")
def window_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WindowRun]:
    """c2syn-demo against a stand-in server that holds every answer until WINDOW requests are in
    flight at once (and the progress file has said so); generate's batch is 1 row = 5 requests."""
    tmp = tmp_path_factory.mktemp("window")
    progress = tmp / "progress.jsonl"
    progress.write_text("")
    reported = threading.Event()
    with PacedServer(seconds_per_request=0.0, hold=True) as server:

        def open_gate() -> None:
            full = server.reached(WINDOW).wait(GATE_LIMIT_S)
            while full and not reported.is_set() and not _progress_shows(progress, "generate", WINDOW):
                time.sleep(0.05)  # the stage reports every TICK_S while it waits
            reported.set()
            server.release.set()

        gate = threading.Thread(target=open_gate, daemon=True)
        gate.start()
        overrides = [
            "backends.local.kind=openai",
            f"backends.local.base_url={server.url}",
            f"backends.local.max_concurrency={WINDOW}",
            "stages.generate.batch_size=1",
        ]
        os.environ[PROGRESS_ENV] = str(progress)
        try:
            result = run_recipe(load_recipe("c2syn-demo", overrides), tmp / "out")
        finally:
            os.environ.pop(PROGRESS_ENV)
            reported.set()
            gate.join()
        events = [json.loads(line) for line in progress.read_text().splitlines()]
        yield WindowRun(result, server, events, _progress_shows(progress, "generate", WINDOW))


def test_a_stage_fills_the_window_across_batches_smaller_than_it(window_run: WindowRun) -> None:
    generate = window_run.result.manifest.stages["generate"]
    assert generate.llm_calls == 5 * generate.rows_in > WINDOW  # more requests than the window
    assert window_run.server.max_in_flight == WINDOW  # all of the window at once, never more


def test_the_generate_line_shows_tokens_per_second_and_requests_in_flight(window_run: WindowRun) -> None:
    assert window_run.in_flight_reported  # the full window appeared on the line while it was in flight
    state = ProgressState(["select", "truncate", "generate", "rank"])
    for event in window_run.events:
        state.apply(event)
    line = state.lines["generate"]
    manifest = window_run.result.manifest
    assert line.tokens == window_run.server.completion_tokens == manifest.stages["generate"].completion_tokens
    assert line.requests == manifest.stages["generate"].llm_calls
    assert line.in_flight == 0  # the last report, after the stage's last answer
    rate = line.rate(t0=window_run.events[0]["t"])  # type: ignore[arg-type]
    assert f"{line.requests} answers" in rate and "tok/s" in rate and "in flight" in rate
    assert "tok/s" not in state.lines["rank"].rate(t0=0.0)  # a stage without a model shows rows only
    # every stage's total is what it processed, and every stage finished
    for stage, line in state.lines.items():
        assert line.total == line.rows_in == manifest.counts.input, stage


def test_a_stage_after_an_expanding_stage_counts_the_rows_it_will_get() -> None:
    state = ProgressState(["split", "toxic"])
    state.apply({"stage": "__total__", "rows": 4, "t": 0.0})
    assert state.lines["toxic"].total == 4  # nothing known yet: one row each
    state.apply({"stage": "split", "rows": 2, "rows_out": 6, "t": 1.0})
    assert state.lines["toxic"].total == 12  # 6 out so far, and the 2 rows to come expand alike
    assert state.lines["toxic"].count() == "0/12 rows"
    state.apply({"stage": "split", "rows": 2, "rows_out": 5, "t": 2.0})
    assert state.lines["toxic"].total == 11  # exact once split has had all its rows


def test_the_requests_after_the_first_window_go_out_as_slots_free_up_once_the_share_is_judged() -> None:
    """A stage holds its requests back only until its quarantine share can be judged (here after 2
    answers): the rest then go into the slots that free up while the first window's slow requests
    are still in flight, instead of waiting for that window to drain."""
    from factory.backends.base import ChatRequest
    from factory.backends.fail_fast import QuarantineWatch, WatchedBackend
    from factory.backends.openai_backend import OpenAIBackend
    from schemas.generation import BackendSpec, GenerationParams

    contents = ["fast 0", "fast 1", "slow 2", "slow 3", "fast 4", "fast 5", "fast 6", "fast 7"]
    params = GenerationParams(max_new_tokens=4)
    requests = [ChatRequest(messages=[{"role": "user", "content": c}], params=params) for c in contents]
    fast_in = threading.Event()
    with PacedServer(seconds_per_request=0.0, hold="slow") as server:
        # only reached when the fast ones never all come back while the slow ones are held (a failure)
        gate = threading.Thread(target=lambda: (fast_in.wait(GATE_LIMIT_S), server.release.set()))
        gate.start()
        spec = BackendSpec(kind="openai", base_url=server.url, model="stand-in", max_concurrency=4)
        watch = QuarantineWatch("generate", max_share=0.8, min_rows=2, unit="requests")
        backend = WatchedBackend(OpenAIBackend(spec), watch, window=4)
        order = []
        try:
            for i, completion in backend.stream(requests):
                assert completion.error is None
                order.append(i)
                if len(order) == 6:
                    fast_in.set()
        finally:
            fast_in.set()
            gate.join()
            backend.close()
    assert sorted(order[:6]) == [0, 1, 4, 5, 6, 7] and sorted(order[6:]) == [2, 3]
    assert server.max_in_flight <= 4  # never more than the cap
