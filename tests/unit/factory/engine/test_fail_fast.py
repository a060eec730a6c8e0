"""Errors no row can fix stop the run with one line; bad rows are quarantined; no file holds a secret.

The LLM stage is a real openai backend talking to a local OpenAI-compatible server (tests/support/openai_server.py)
that refuses keys, fails requests or answers with the bundled model.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from factory.cli.app import main
from factory.core.errors import RunFailed, UserError
from factory.dataset.folder_check import check_folder
from factory.engine.recipe import load_recipe
from factory.engine.run import run_recipe
from tests.support.held_server import HeldServer
from tests.support.openai_server import OpenAITestServer
from tests.unit.factory.engine.test_engine import DEMO, DEMO_ROWS, canned_recipe

KEY = "sk-test-8d2e61f0c9"
KEY_ENV = "SAFEPREF_FAIL_FAST_KEY"


@pytest.fixture(scope="module")
def model() -> Iterator[object]:
    from factory.backends.transformers_backend import TransformersBackend
    from schemas.generation import BackendSpec

    backend = TransformersBackend(BackendSpec(kind="transformers", model="bundled", batch_size=8))
    yield backend
    backend.close()


@pytest.fixture
def server(model: object) -> Iterator[OpenAITestServer]:
    with OpenAITestServer(model, api_key=KEY) as running:  # type: ignore[arg-type]
        yield running


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def judged_recipe(tmp_path: Path, url: str, *, template: str | None = None, **top: object) -> Path:
    """c2syn-demo with canned generations (no LLM) and an LLM judge of SR (`check`) on the server."""
    data = yaml.safe_load(yaml.safe_dump(DEMO))
    data["stages"][2] = {"name": "generate", "step": "tests.support.steps_for_tests:CannedGenerate"}
    check: dict[str, object] = {"judge": "llm", "action": "drop"}
    if template is not None:
        (tmp_path / "judge.jinja").write_text(template)
        check["judge_template"] = "judge.jinja"
    data["stages"].insert(
        3, {"name": "check", "step": "c2syn.safety_check", "backend": "local", "params": check}
    )
    data["backends"]["local"] = {
        "kind": "openai",
        "base_url": url,
        "model": "bundled",
        "api_key_env": KEY_ENV,
        "max_retries": 0,
        "generation": {"max_new_tokens": 4},
    }
    data.update(top)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def files_holding(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_refused_api_key_stops_the_run_in_one_line_and_no_file_holds_it(
    server: OpenAITestServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "sk-wrong-55aa01be77"  # the server's 401 body echoes the key it was given
    monkeypatch.setenv(KEY_ENV, wrong)
    out = tmp_path / "out"
    recipe = judged_recipe(tmp_path, server.url)
    monkeypatch.setattr(
        sys, "argv", ["safepref", "run", str(recipe), "--allow-import-steps", "--out", str(out)]
    )
    with pytest.raises(SystemExit) as ended:
        main()
    err = capsys.readouterr().err
    assert ended.value.code == 2 and "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error: ")]
    assert line.startswith("error: backend: HTTP 401 from ") and f"check the key in ${KEY_ENV}" in line
    assert wrong not in err and "***" in line
    assert server.log and all(e.status == 401 for e in server.log)
    assert not (out / "manifest.json").exists()  # not a finished run: the re-run starts afresh
    assert files_holding(out, wrong) == []


def test_a_template_that_cannot_render_stops_the_run_before_any_request(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    recipe = judged_recipe(tmp_path, server.url, template="Is {{ reply_text }} safe? yes or no")
    with pytest.raises(UserError, match="template judge.jinja: 'reply_text' is undefined"):
        run_recipe(load_recipe(str(recipe)), tmp_path / "out", allow_import_steps=True)
    assert server.log == []


def test_a_model_that_cannot_be_loaded_stops_the_run(tmp_path: Path) -> None:
    """A Hub id (no local folder to check beforehand) that is not there, offline: one error, not
    every row quarantined and exit 0."""
    overrides = ["backends.local.model=nobody/no-such-model"]
    with pytest.raises(
        UserError,
        match=r"^backends.local: transformers serve of model 'nobody/no-such-model' exited with code 1 ",
    ):
        run_recipe(load_recipe("c2syn-demo", overrides, limit=3), tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_an_endpoint_failing_every_request_stops_once_the_share_is_passed(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.inject("status", times=1000, status=503)
    recipe = judged_recipe(tmp_path, server.url, quarantine_min_rows=4)
    data = yaml.safe_load(recipe.read_text())
    data["stages"][3]["batch_size"] = 2
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(RunFailed) as stopped:
        run_recipe(load_recipe(str(recipe)), tmp_path / "out", allow_import_steps=True)
    message = str(stopped.value)
    assert (
        message.startswith("stage 'check' quarantined ") and "more than max_quarantine_share 0.8" in message
    )
    assert "HTTP 503" in message  # the first reason, so the user sees why
    judged = len({json.dumps(e.body["messages"]) for e in server.log})
    assert 4 <= judged < 9  # the 9 rows reaching `check`: the later batches were not sent
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_stage_stops_sending_its_batch_once_another_stage_stopped_the_run(tmp_path: Path) -> None:
    """An LLM stage takes all its rows in one batch; the stop another stage records (here: the test,
    while the stand-in holds the stage's requests) ends its sending, not only its next batch."""
    rows, window, guard_s = 400, 4, 240
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(rows)))
    (tmp_path / "ask.jinja").write_text("{{ prompt }}")
    stage = {"template": "ask.jinja", "output_column": "response"}
    recipe = {
        "name": "stopped-mid-batch",
        "license": "apache-2.0",
        "source": {"kind": "file", "path": str(source)},
        "stages": [{"name": "ask", "step": "llm.generate", "backend": "held", "params": stage}],
        "outputs": [{"config": "rows", "exporter": "generate.responses"}],
        "card": {"pretty_name": "stopped"},
    }
    out, done = tmp_path / "out", threading.Event()
    reason = "stage 'other' quarantined 9 of 10 rows, more than max_quarantine_share 0.8"
    with HeldServer() as server:
        backend = {"kind": "openai", "base_url": server.url, "model": "stand-in", "max_concurrency": window}
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**recipe, "backends": {"held": backend}}))
        server.answer_first(20)

        def stop_meanwhile() -> None:  # what another stage's worker does once its share is passed
            if server.wait_held(window, guard_s):  # the stage's window is in flight
                (out / ".work" / "stopped.json").write_text(json.dumps({"message": reason, "exit_code": 1}))
                server.release_held()  # their answers come in; what is sent next is held
            done.wait(guard_s)  # the run ends (a hang guard: a stage that never stops waits here)
            server.release()

        other_stage = threading.Thread(target=stop_meanwhile)
        other_stage.start()
        try:
            with pytest.raises(RunFailed, match=reason):
                run_recipe(load_recipe(str(tmp_path / "recipe.yaml")), out)
        finally:
            done.set()
            other_stage.join()
    # the 20 answered, the window in flight at the stop and at most a window sent as its answers came
    # in; not the 400 requests of the stage's one batch
    assert server.received <= 20 + 2 * window


def test_oversized_prompts_are_not_sent_and_a_run_without_output_fails(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    recipe = judged_recipe(tmp_path, server.url)
    data = yaml.safe_load(recipe.read_text())
    data["backends"]["local"]["max_prompt_chars"] = 20
    recipe.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    with pytest.raises(RunFailed, match=r"no output: 9 rows quarantined \(stage check\)"):
        run_recipe(load_recipe(str(recipe)), out, allow_import_steps=True)
    assert server.log == []
    reasons = [r["reason"] for r in pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()]
    assert len(reasons) == 9 and all("max_prompt_chars is 20" in r for r in reasons)


def test_no_file_of_a_finished_run_holds_the_api_key(server: OpenAITestServer, tmp_path: Path) -> None:
    overrides = [
        "backends.local.kind=openai",
        f"backends.local.base_url={server.url}",
        f"backends.local.api_key_env={KEY_ENV}",
        "backends.local.generation.max_new_tokens=4",
    ]
    out = tmp_path / "out"
    result = run_recipe(load_recipe("c2syn-demo", overrides, limit=2), out)
    assert result.manifest.counts.output >= 1 and server.log
    assert all(e.authorization == f"Bearer {KEY}" for e in server.log)  # the key was really used
    assert files_holding(out, KEY) == []


def test_bad_source_rows_are_quarantined_before_any_llm_work(tmp_path: Path) -> None:
    rows = [dict(r, note="mild") for r in DEMO_ROWS]  # `note`: a column no stage reads
    rows[1]["prompt"] = 7
    rows[2]["prompt"] = ["a", "list"]
    rows[4]["prompt"] = "half a surrogate pair: \ud800"
    del rows[6]["response_0"]
    rows[7]["note"] = 5  # a mixed column crashed distilabel's dataset after all the LLM work
    rows[8]["note"] = None  # a null in a column no stage reads is fine
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json escapes the lone surrogate
    out = tmp_path / "out"
    path = canned_recipe(tmp_path, source={"kind": "file", "path": str(src)})
    result = run_recipe(load_recipe(str(path)), out, allow_import_steps=True)
    counts = result.manifest.counts
    assert counts.quarantined["source"] == 5
    assert counts.input == len(rows)
    q = {r["_sp_id"]: r for r in pq.read_table(out / "quarantine" / "rows.parquet").to_pylist()}
    assert q["1"]["reason"] == "row 1: column 'prompt' holds number (int) where the other rows hold text"
    assert q["2"]["reason"] == "row 2: column 'prompt' holds list (list) where the other rows hold text"
    assert q["4"]["reason"] == "row 4: column 'prompt' invalid UTF-8: a lone surrogate character"
    assert q["6"]["reason"] == "row 6: column 'response_0' is missing"
    assert q["7"]["reason"] == "row 7: column 'note' holds number (int) where the other rows hold text"
    assert q["1"]["raw_output"] == "7" and "\\ud800" in q["4"]["raw_output"]
    assert all(r["stage"] == "source" for r in q.values())
    assert sum(s.llm_calls for s in result.manifest.stages.values()) == 0
    assert check_folder(out).ok


def test_eval_fails_when_every_generation_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["eval", "harm", "--model", f"openai:http://127.0.0.1:{port}/v1@m", "--rows", "2"]
    monkeypatch.setattr(sys, "argv", ["safepref", *args, "--max-new-tokens", "4", "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as ended:
        main()
    err = capsys.readouterr().err
    assert ended.value.code == 1 and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("error: 2 of 2 generations failed (more than --max-failed-share 0.1)")
    assert "ConnectError" in line
