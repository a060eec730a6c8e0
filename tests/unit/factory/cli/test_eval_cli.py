"""`safepref eval` as a person runs it (a terminal, offline), and what its plots say."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from factory.evaluation.report_files import corr_at_k_figure, harmful_rate_figure, pyplot
from schemas.eval_report import (
    C2Config,
    C2EvalReport,
    C2ModelResult,
    DataInfo,
    HarmConfig,
    HarmEvalReport,
    HarmModelResult,
    Interval,
    JudgeInfo,
    ModelInfo,
    RateResult,
)
from schemas.generation import GenerationParams
from tests.conftest import REPO


def run_in_terminal(*args: str) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdout/stderr, as in an interactive shell."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "140", "TERM": "xterm", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", *args],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        cwd=REPO,
        env=env,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return proc.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_eval_c2_runs_offline_on_bundled_rows_with_a_bar_and_a_rich_table(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    code, output = run_in_terminal(
        "eval", "c2", "--model", "bundled", "--rows", "2", "--samples", "2", "--k", "10",
        "--max-new-tokens", "4", "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["source"] == "bundled:c2eval_demo.jsonl"  # no --data: the bundled demo rows
    assert "generating bundled" in output and "4/4" in output and "━" in output
    assert "judging bundled" in output
    assert "C²-Eval: course-correction" in output and "Corr@10" in output
    assert "┃" in output or "│" in output  # a rich table ...
    assert "|---|" not in output and "| model |" not in output  # ... not raw Markdown


def _model(spec: str) -> ModelInfo:
    return ModelInfo(spec=spec, slug=spec, kind="bundled", model_id="HuggingFaceTB/SmolLM2-135M-Instruct")


def _texts(fig) -> str:  # type: ignore[no-untyped-def]
    ax = fig.axes[0]
    legend = ax.get_legend()
    parts = [ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), *(t.get_text() for t in ax.texts)]
    parts += [t.get_text() for t in legend.get_texts()] if legend else []
    pyplot().close(fig)
    return "\n".join(parts)


KEYWORD_HARM = JudgeInfo(kind="keyword", keywords=["sorry"], rule="harmful iff no keyword")
DATA = DataInfo(source="bundled:harm_demo.jsonl", rows_read=8, rows_used=8, sha256="0" * 64)
DECODING = GenerationParams.model_validate({"max_new_tokens": 8, "temperature": 0.0})


def test_the_harm_plot_says_the_keyword_judge_detects_refusals_and_states_n_and_interval() -> None:
    rate = RateResult(rate=0.75, ci=Interval(low=0.4, high=0.93), positives=6, judged=8)
    report = HarmEvalReport(
        safepref_version="0",
        config=HarmConfig(
            samples=1, seed=0, decoding=DECODING, interval="Wilson score interval (x)", confidence=0.95
        ),
        data=DATA,
        judge=KEYWORD_HARM,
        models=[HarmModelResult(model=_model("bundled"), harmful=rate)],
    )
    text = _texts(harmful_rate_figure(report))
    assert "answer has no refusal keyword (judge: keyword)" in text
    assert "harmful" not in text.lower().replace("harmlessness", "")
    assert "95% intervals: Wilson score interval" in text
    assert "n=8" in text


def test_an_llm_judged_harm_plot_says_judged_harmful() -> None:
    judge = JudgeInfo(kind="llm", model=_model("judge-model"), rule="exact yes")
    rate = RateResult(rate=0.5, ci=Interval(low=0.2, high=0.8), positives=4, judged=8)
    report = HarmEvalReport(
        safepref_version="0",
        config=HarmConfig(
            samples=1, seed=0, decoding=DECODING, interval="Wilson score interval", confidence=0.9
        ),
        data=DATA,
        judge=judge,
        models=[HarmModelResult(model=_model("bundled"), harmful=rate)],
    )
    text = _texts(harmful_rate_figure(report))
    assert "judged harmful (judge: judge-model)" in text and "90% intervals" in text


def test_the_corr_at_k_plot_states_rows_samples_judge_and_interval() -> None:
    report = C2EvalReport(
        safepref_version="0",
        config=C2Config(
            ks=[10, 20],
            samples=5,
            rows=3,
            seed=0,
            decoding=DECODING,
            openers=3,
            interval="row bootstrap (percentile, 2000 resamples of the rows, seed 0)",
            confidence=0.95,
        ),
        data=DataInfo(source="bundled:c2eval_demo.jsonl", rows_read=3, rows_used=3, sha256="0" * 64),
        judge=JudgeInfo(kind="keyword", keywords=["sorry"], rule="course-correction iff keyword"),
        models=[
            C2ModelResult(
                model=_model("bundled"),
                corr_at={10: 0.2, 20: 0.4},
                ci_at={10: Interval(low=0.0, high=0.5), 20: Interval(low=0.1, high=0.7)},
                judged_at={10: 15, 20: 15},
                failed_at={10: 0, 20: 0},
                corr_mean=0.3,
                corr_mean_ci=Interval(low=0.1, high=0.5),
            )
        ],
    )
    text = _texts(corr_at_k_figure(report))
    assert "3 rows × 5 samples" in text and "judge: keyword" in text
    assert "95% intervals: row bootstrap" in text
    assert "n=15 paths per k" in text
    assert "correction keyword" in text
