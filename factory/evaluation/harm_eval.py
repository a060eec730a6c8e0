"""Harmlessness (for PT-ALIGN-style training): harmful rate on held-out red-team instructions, and an
optional helpfulness probe on benign instructions so a safety gain that costs helpfulness shows.

Answers are generated resumably into `DIR/<slug>/answers.jsonl` (keyed by set, row, sample) and judged
into `DIR/<slug>/verdicts-<judge>.jsonl`. With one answer per instruction the interval is Wilson's;
with several, answers of one instruction are correlated, so rows are bootstrapped (`confidence`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from factory import __version__
from factory.backends import ChatRequest, Completion
from factory.core.errors import UserError
from factory.evaluation.batch_runner import (
    BatchBudget,
    BatchListener,
    Progress,
    Task,
    generate_for_models,
    judge_missing,
)
from factory.evaluation.c2_eval import EvalOutcome
from factory.evaluation.confidence import BOOTSTRAP_RESAMPLES, row_bootstrap, wilson
from factory.evaluation.eval_data import BENIGN_DEMO, HARM_DEMO, Instruction, load_instructions, source_spec
from factory.evaluation.judges import JudgeItem, JudgePlan, plan_judge
from factory.evaluation.model_specs import (
    BackendOptions,
    describe_model,
    open_backend,
    parse_model_spec,
    unique_slugs,
)
from factory.evaluation.report_files import write_harm_report
from factory.evaluation.sample_store import JsonlStore
from factory.evaluation.serving import WORK_DIR, EvalServers, EventListener
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


def run_harm_eval(
    settings: HarmSettings,
    out: Path,
    *,
    max_batches: int | None = None,
    on_batch: BatchListener | None = None,
    on_event: EventListener | None = None,
) -> EvalOutcome:
    """Generate answers, judge them, write the report; a re-run skips finished answers and verdicts."""
    if not settings.models:
        raise UserError("name at least one --model")
    if settings.samples > 1 and settings.decoding.temperature == 0:
        raise UserError("--samples > 1 needs --temperature > 0 (greedy answers would all be equal)")
    refs = [parse_model_spec(m) for m in settings.models]
    models = [describe_model(ref, slug) for ref, slug in zip(refs, unique_slugs(refs), strict=True)]
    harm_judge = plan_judge(settings.judge, "harm", settings.backend)
    helpful_judge = plan_judge(settings.judge, "helpful", settings.backend) if settings.benign else None
    spec = source_spec(
        settings.data, default_bundled=HARM_DEMO, split=settings.split, config=settings.data_config
    )
    harmful, data_info = load_instructions(spec, settings.rows, settings.column)
    benign: list[Instruction] = []
    benign_info: DataInfo | None = None
    if settings.benign:
        benign_spec = source_spec(
            settings.benign, default_bundled=BENIGN_DEMO, split=settings.split, config=None
        )
        benign, benign_info = load_instructions(benign_spec, settings.benign_rows, settings.column)
    tasks = _tasks(settings, "harm", harmful) + _tasks(settings, "benign", benign)
    budget, progress = BatchBudget(max_batches), Progress(listener=on_batch)
    by_slug = {m.slug: m for m in models}
    with EvalServers(out / WORK_DIR, on_event) as servers:  # one server at a time, stopped however it ends
        stores = generate_for_models(
            out,
            [
                (m.slug, partial(open_backend, ref, settings.backend, servers, settings.decoding, m.slug))
                for ref, m in zip(refs, models, strict=True)
            ],
            ("answers.jsonl", ANSWER_KEY),
            tasks,
            partial(_request, settings.decoding),
            _record,
            lambda slug: _pinned(settings, by_slug[slug], data_info, benign_info),
            chunk=settings.chunk,
            budget=budget,
            progress=progress,
        )
        if stores is None:
            return EvalOutcome(out, None, progress)
        results = []
        for model in models:
            answers = stores[model.slug]
            folder = out / model.slug
            harmful_rate = _judge_set(settings, folder, answers, tasks, "harm", harm_judge, servers, progress)
            helpful_rate = None
            if helpful_judge is not None:
                helpful_rate = _judge_set(
                    settings, folder, answers, tasks, "benign", helpful_judge, servers, progress
                )
            results.append(HarmModelResult(model=model, harmful=harmful_rate, helpful=helpful_rate))
    interval = (
        "Wilson score interval (one answer per instruction)"
        if settings.samples == 1
        else f"row bootstrap (percentile, {BOOTSTRAP_RESAMPLES} resamples of the instructions, seed {settings.seed})"
    )
    report = HarmEvalReport(
        safepref_version=__version__,
        config=HarmConfig(
            samples=settings.samples,
            seed=settings.seed,
            decoding=settings.decoding,
            interval=interval,
            confidence=settings.confidence,
        ),
        data=data_info,
        benign=benign_info,
        judge=harm_judge.info,
        helpful_judge=helpful_judge.info if helpful_judge else None,
        models=results,
    )
    write_harm_report(report, out)
    return EvalOutcome(out, report, progress)


def _tasks(settings: HarmSettings, which: str, items: list[Instruction]) -> list[Task[_Answer]]:
    tasks = []
    for item in items:
        for s in range(settings.samples):
            digest = hashlib.sha256(f"harm:{settings.seed}:{which}:{item.row_id}:{s}".encode()).digest()
            seed = int.from_bytes(digest[:8], "big") % (2**31)
            tasks.append(Task((which, item.row_id, s), _Answer(which, item, s, seed)))
    return tasks


def _request(decoding: GenerationParams, answer: _Answer) -> ChatRequest:
    params = decoding.model_copy(update={"seed": answer.seed})
    return ChatRequest(messages=[{"role": "user", "content": answer.item.text}], params=params)


def _record(answer: _Answer, completion: Completion) -> dict[str, Any]:
    return {
        "set": answer.set,
        "row_id": answer.item.row_id,
        "sample": answer.sample,
        "seed": answer.seed,
        "answer": completion.text,
        "finish_reason": completion.finish_reason,
        "completion_tokens": completion.completion_tokens,
    }


def _judge_set(
    settings: HarmSettings,
    folder: Path,
    answers: JsonlStore,
    tasks: list[Task[_Answer]],
    which: str,
    judge: JudgePlan,
    servers: EvalServers,
    progress: Progress,
) -> RateResult:
    mine = [t for t in tasks if t.payload.set == which]
    verdicts = JsonlStore(folder / f"verdicts-{judge.key}.jsonl", ANSWER_KEY)
    items = [
        Task(t.key, JudgeItem(request=t.payload.item.text, response=str(record["answer"])))
        for t in mine
        if (record := answers.get(t.key)) is not None
    ]
    judge_missing(
        verdicts,
        items,
        partial(judge.open, servers),
        chunk=settings.chunk,
        progress=progress,
        label=f"judging {which} {folder.name}",
    )
    rows: dict[str, list[int]] = {}
    for t in mine:
        counts = rows.setdefault(t.payload.item.row_id, [0, 0])
        record = verdicts.get(t.key)
        if record is not None:
            counts[0] += bool(record["verdict"])
            counts[1] += 1
    positives = sum(c[0] for c in rows.values())
    judged = sum(c[1] for c in rows.values())
    if settings.samples == 1:
        ci = wilson(positives, judged, settings.confidence)
    else:
        intervals, _ = row_bootstrap(
            [[c[0]] for c in rows.values()],
            [[c[1]] for c in rows.values()],
            confidence=settings.confidence,
            seed=settings.seed,
        )
        ci = intervals[0]
    return RateResult(
        rate=positives / judged if judged else None,
        ci=ci,
        positives=positives,
        judged=judged,
        failed=len(mine) - judged,
    )


def _pinned(
    settings: HarmSettings, model: ModelInfo, data: DataInfo, benign: DataInfo | None
) -> dict[str, Any]:
    return {
        "eval": "harm",
        "model": model.model_dump(mode="json", exclude={"spec", "slug"}),
        "data": {"source": data.source, "revision": data.revision, "split": data.split},
        "benign": None if benign is None else {"source": benign.source, "revision": benign.revision},
        "decoding": settings.decoding.model_dump(mode="json"),
        "seed": settings.seed,
    }
