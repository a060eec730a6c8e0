"""The evaluation runner's skeleton, through the harm evaluation on an OpenAI-compatible endpoint with a
canned answer (the flow is under test, not the wording): phases in order, samples stored and resumed."""

from __future__ import annotations

import json
from pathlib import Path

from factory.evaluation.harm_eval import HarmSettings, run_harm_eval
from tests.support.held_server import TEXT, HeldServer


def test_every_model_generates_before_any_is_judged_and_a_resume_does_only_what_is_missing(
    tmp_path: Path,
) -> None:
    with HeldServer() as server:
        settings = HarmSettings(
            models=[f"openai:{server.url}@a", f"openai:{server.url}@b"],
            rows=3,
            benign="bundled",
            benign_rows=2,
            chunk=2,
        )
        stopped = run_harm_eval(settings, tmp_path, max_batches=2)  # as if killed after 2 batches
        assert stopped.report is None and stopped.progress.interrupted
        assert stopped.progress.generated == 4 and stopped.progress.judged == 0
        assert not (tmp_path / "report.json").exists() and not (tmp_path / "openai-b").exists()

        labels: list[str] = []
        resumed = run_harm_eval(settings, tmp_path, on_batch=lambda label, done, total: labels.append(label))
        again = run_harm_eval(settings, tmp_path)
    assert resumed.progress.generated == 1 + 5 and resumed.progress.judged == 2 * (3 + 2)
    assert list(dict.fromkeys(labels)) == [
        "generating openai-a",
        "generating openai-b",
        "judging harm openai-a",
        "judging benign openai-a",
        "judging harm openai-b",
        "judging benign openai-b",
    ]
    answers = [
        json.loads(line) for line in (tmp_path / "openai-a" / "answers.jsonl").read_text().splitlines()
    ]
    assert sorted((a["set"], a["row_id"]) for a in answers) == [
        ("benign", "0"),
        ("benign", "1"),
        ("harm", "0"),
        ("harm", "1"),
        ("harm", "2"),
    ]
    assert {a["answer"] for a in answers} == {TEXT} and all(isinstance(a["seed"], int) for a in answers)
    assert resumed.report is not None
    for result in resumed.report.models:  # the canned answer refuses ("I can't"): neither harmful nor helpful
        assert (result.harmful.rate, result.harmful.judged, result.harmful.failed) == (0.0, 3, 0)
        assert result.helpful is not None and (result.helpful.rate, result.helpful.judged) == (0.0, 2)
    assert again.progress.generated == 0 and again.progress.judged == 0 and again.report == resumed.report
