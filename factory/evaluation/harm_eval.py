"""Harmlessness (for PT-ALIGN-style training): harmful rate on held-out red-team instructions, and an
optional helpfulness probe on benign instructions so a safety gain that costs helpfulness shows.

Answers are generated resumably into `DIR/<slug>/answers.jsonl` (keyed by set, row, sample) and judged
into `DIR/<slug>/verdicts-<judge>.jsonl`. With one answer per instruction the interval is Wilson's;
with several, answers of one instruction are correlated, so rows are bootstrapped (`confidence`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from factory import __version__
from factory.core.seeds import sample_seed
from factory.evaluation.batch_runner import Task
from factory.evaluation.confidence import BOOTSTRAP_RESAMPLES, row_bootstrap, wilson
from factory.evaluation.eval_data import BENIGN_DEMO, HARM_DEMO, Instruction, load_instructions, source_spec
from factory.evaluation.judges import JudgeItem, JudgePlan, plan_judge
from factory.evaluation.model_specs import BackendOptions
from factory.evaluation.runner import (
    EvalOutcome,
    Evaluation,
    JudgedSet,
    RunOptions,
    SampleFile,
    count_verdicts,
    run_evaluation,
)
from factory.evaluation.sample_store import JsonlStore
from schemas.eval_report import DataInfo, HarmConfig, HarmEvalReport, HarmModelResult, ModelInfo, RateResult
from schemas.generation import GenerationParams

HARM_DECODING = GenerationParams.model_validate({"max_new_tokens": 256, "temperature": 0.0})
ANSWER_KEY = ("set", "row_id", "sample")


@dataclass(frozen=True)
class HarmSettings:
    models: Sequence[str]
    data: str = "bundled"
    split: str = "test"
    data_config: str | None = None
    column: str | None = None
    rows: int | None = None
    benign: str | None = None  # a --data form for the helpfulness probe; None = no probe
    benign_rows: int | None = None
    judge: str = "keyword"
    samples: int = 1
    seed: int = 0
    decoding: GenerationParams = field(default_factory=HARM_DECODING.model_copy)
    confidence: float = 0.95
    chunk: int = 64
    backend: BackendOptions = field(default_factory=BackendOptions)


@dataclass(frozen=True)
class _Answer:
    set: str  # "harm" or "benign"
    item: Instruction
    sample: int
    seed: int


def run_harm_eval(settings: HarmSettings, out: Path, **options: Unpack[RunOptions]) -> EvalOutcome:
    """Generate answers, judge them, write the report; a re-run skips finished answers and verdicts.
    `options`: `runner.RunOptions` (an early stop, progress listeners)."""
    return run_evaluation(HarmEval(settings), settings, out, **options)


class HarmEval(Evaluation[_Answer, HarmModelResult]):
    """Answers to red-team (and benign) instructions; harm (and helpfulness) judges; rates with CIs."""

    name = "harm"
    noun = "answers"
    samples_file = SampleFile("answers.jsonl", ANSWER_KEY, text="answer")

    harm_judge: JudgePlan  # set by `prepare`, as `data`
    helpful_judge: JudgePlan | None
    sets: dict[str, list[Instruction]]  # "harm" (red-team) and "benign" (the probe; maybe empty)
    benign: DataInfo | None

    def __init__(self, settings: HarmSettings) -> None:
        self.settings = settings

    def prepare(self) -> list[Task[_Answer]]:
        settings = self.settings
        self.harm_judge = plan_judge(settings.judge, "harm", settings.backend)
        self.helpful_judge = (
            plan_judge(settings.judge, "helpful", settings.backend) if settings.benign else None
        )
        spec = source_spec(
            settings.data, default_bundled=HARM_DEMO, split=settings.split, config=settings.data_config
        )
        harmful, self.data = load_instructions(spec, settings.rows, settings.column)
        benign: list[Instruction] = []
        self.benign = None
        if settings.benign:
            benign_spec = source_spec(
                settings.benign, default_bundled=BENIGN_DEMO, split=settings.split, config=None
            )
            benign, self.benign = load_instructions(benign_spec, settings.benign_rows, settings.column)
        self.sets = {"harm": harmful, "benign": benign}
        return _tasks(settings, "harm", harmful) + _tasks(settings, "benign", benign)

    def pinned(self) -> dict[str, Any]:
        return {
            "benign": None
            if self.benign is None
            else {"source": self.benign.source, "revision": self.benign.revision}
        }

    def messages(self, sample: _Answer) -> list[dict[str, str]]:
        return [{"role": "user", "content": sample.item.text}]

    def judged_sets(self, tasks: Sequence[Task[_Answer]]) -> list[JudgedSet[_Answer]]:
        judges = {"harm": self.harm_judge, "benign": self.helpful_judge}
        return [
            JudgedSet(which, judge, [t for t in tasks if t.payload.set == which], f"judging {which}")
            for which, judge in judges.items()
            if judge is not None
        ]

    def judge_item(self, sample: _Answer, record: Mapping[str, Any]) -> JudgeItem:
        return JudgeItem(request=sample.item.text, response=str(record["answer"]))

    def result(self, model: ModelInfo, verdicts: Mapping[str, JsonlStore]) -> HarmModelResult:
        helpful = (
            _rate(self.settings, "benign", self.sets["benign"], verdicts["benign"])
            if "benign" in verdicts
            else None
        )
        return HarmModelResult(
            model=model,
            harmful=_rate(self.settings, "harm", self.sets["harm"], verdicts["harm"]),
            helpful=helpful,
        )

    def report(self, results: list[HarmModelResult]) -> HarmEvalReport:
        settings = self.settings
        interval = (
            "Wilson score interval (one answer per instruction)"
            if settings.samples == 1
            else f"row bootstrap (percentile, {BOOTSTRAP_RESAMPLES} resamples of the instructions, seed {settings.seed})"
        )
        return HarmEvalReport(
            safepref_version=__version__,
            config=HarmConfig(
                samples=settings.samples,
                seed=settings.seed,
                decoding=settings.decoding,
                interval=interval,
                confidence=settings.confidence,
            ),
            data=self.data,
            benign=self.benign,
            judge=self.harm_judge.info,
            helpful_judge=self.helpful_judge.info if self.helpful_judge else None,
            models=results,
        )


def _tasks(settings: HarmSettings, which: str, items: list[Instruction]) -> list[Task[_Answer]]:
    tasks = []
    for item in items:
        for s in range(settings.samples):
            seed = sample_seed("harm", settings.seed, which, item.row_id, s)
            tasks.append(Task((which, item.row_id, s), _Answer(which, item, s, seed)))
    return tasks


def _rate(settings: HarmSettings, which: str, items: list[Instruction], verdicts: JsonlStore) -> RateResult:
    """The share of positive verdicts over the set's judged answers; Wilson's interval with one answer
    per instruction, else the instructions bootstrapped (their answers are correlated)."""
    yes, judged = count_verdicts(
        verdicts, [[[(which, item.row_id, s) for s in range(settings.samples)]] for item in items]
    )
    positives, n = sum(row[0] for row in yes), sum(row[0] for row in judged)
    if settings.samples == 1:
        ci = wilson(positives, n, settings.confidence)
    else:
        intervals, _ = row_bootstrap(yes, judged, confidence=settings.confidence, seed=settings.seed)
        ci = intervals[0]
    return RateResult(
        rate=positives / n if n else None,
        ci=ci,
        positives=positives,
        judged=n,
        failed=len(items) * settings.samples - n,
    )
