"""One evaluation run, whatever it measures: the skeleton C²-Eval (`c2_eval`) and harm (`harm_eval`) share.

    settings → data → model servers → samples (stored, resumable) → verdicts → metrics → report

An `Evaluation` brings what differs: its checks, its judges and data, the samples laid out over the
data (one `Task` each, keyed), a sample's prompt, the sets of samples each judge rates, a model's
metrics from its verdicts, and the report. `run_evaluation` does the rest the same way for both:
it describes the models, serves them one at a time (`serving`), generates what
`DIR/<slug>/<samples file>` lacks after pinning `DIR/<slug>/settings.json` (`sample_store`), judges
what `DIR/<slug>/verdicts-<judge>.jsonl` lacks (`batch_runner`) and writes the report folder
(`report_files`). Every model generates before any is judged, so one server runs at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar, Unpack

from factory.backends import ChatRequest, Completion
from factory.core.errors import UserError
from factory.evaluation.batch_runner import (
    BatchBudget,
    BatchListener,
    Progress,
    Task,
    generate_missing,
    judge_missing,
)
from factory.evaluation.judges import JudgeItem, JudgePlan
from factory.evaluation.model_specs import (
    BackendOptions,
    ModelRef,
    describe_model,
    open_backend,
    parse_model_spec,
    unique_slugs,
)
from factory.evaluation.report_files import EvalReport, write_report
from factory.evaluation.sample_store import JsonlStore, Key, pin_settings
from factory.evaluation.serving import WORK_DIR, EvalServers, EventListener
from schemas.eval_report import DataInfo, ModelInfo
from schemas.generation import GenerationParams


class RunSettings(Protocol):
    """What every evaluation's settings hold (`C2Settings`, `HarmSettings`) and the runner reads."""

    @property
    def models(self) -> Sequence[str]: ...
    @property
    def samples(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def decoding(self) -> GenerationParams: ...
    @property
    def chunk(self) -> int: ...
    @property
    def backend(self) -> BackendOptions: ...


class Sample(Protocol):
    """What one stored sample is generated from (a task's payload)."""

    @property
    def seed(self) -> int: ...


S = TypeVar("S", bound=Sample)
R = TypeVar("R")


@dataclass(frozen=True)
class SampleFile:
    """A model's stored samples: `DIR/<slug>/<name>`, one record per `key`, the text in field `text`."""

    name: str
    key: tuple[str, ...]
    text: str


@dataclass(frozen=True)
class JudgedSet(Generic[S]):
    """Samples one judge rates, into `DIR/<slug>/verdicts-<judge.key>.jsonl`; `Evaluation.result`
    finds their verdicts under `name`, the progress bar says `label` and the model's slug."""

    name: str
    judge: JudgePlan
    tasks: Sequence[Task[S]]
    label: str


@dataclass
class EvalOutcome:
    report_dir: Path
    report: EvalReport | None  # None when the run stopped early (max_batches)
    progress: Progress


class Evaluation(ABC, Generic[S, R]):
    """What one evaluation brings to `run_evaluation`, in the order it is asked for: `check`, then
    (after the models are described) `prepare`, which plans the judges and reads the data, then the
    rest. `noun` names a sample in messages ("paths", "answers"); `name` is pinned with the samples."""

    name: ClassVar[str]
    noun: ClassVar[str]
    samples_file: ClassVar[SampleFile]
    data: DataInfo  # set by `prepare`: its source, revision and split are pinned with the samples

    def check(self) -> None:
        """Refuse settings this evaluation cannot run, one line each (nothing is loaded yet)."""

    @abstractmethod
    def prepare(self) -> list[Task[S]]:
        """Plan the judges, read the data (setting `data`); the samples to generate for each model."""

    def pinned(self) -> dict[str, Any]:
        """What else decides a stored sample's text, besides the model, data, decoding and seed."""
        return {}

    @abstractmethod
    def messages(self, sample: S) -> list[dict[str, str]]:
        """The chat a sample is generated from (a final assistant turn is a prefill to continue)."""

    def record(self, sample: S) -> dict[str, Any]:
        """What a stored sample holds besides its key, seed, text, finish reason and token count."""
        return {}

    @abstractmethod
    def judged_sets(self, tasks: Sequence[Task[S]]) -> list[JudgedSet[S]]:
        """Which of the samples each judge rates, in the order they are judged."""

    @abstractmethod
    def judge_item(self, sample: S, record: Mapping[str, Any]) -> JudgeItem:
        """What a judge sees of a sample, stored as `record`."""

    @abstractmethod
    def result(self, model: ModelInfo, verdicts: Mapping[str, JsonlStore]) -> R:
        """A model's metrics, with their intervals, from its verdicts (by judged set name)."""

    @abstractmethod
    def report(self, results: list[R]) -> EvalReport: ...


class RunOptions(TypedDict, total=False):
    """How a run is driven, not what it measures: `max_batches` stops after that many generation
    batches, as a killed run would (no report then); `on_batch` is told each finished batch (a
    progress bar), `on_event` each server start."""

    max_batches: int | None
    on_batch: BatchListener | None
    on_event: EventListener | None


def run_evaluation(
    evaluation: Evaluation[S, R], settings: RunSettings, out: Path, **options: Unpack[RunOptions]
) -> EvalOutcome:
    """Generate, judge, aggregate and write the report; a re-run skips every stored sample and verdict."""
    if not settings.models:
        raise UserError("name at least one --model")
    evaluation.check()
    if settings.samples > 1 and settings.decoding.temperature == 0:
        raise UserError(
            f"--samples > 1 needs --temperature > 0 (greedy {evaluation.noun} would all be equal)"
        )
    refs = [parse_model_spec(m) for m in settings.models]
    models = [describe_model(ref, slug) for ref, slug in zip(refs, unique_slugs(refs), strict=True)]
    tasks = evaluation.prepare()
    progress = Progress(listener=options.get("on_batch"))
    # one server at a time, stopped however the run ends
    with EvalServers(out / WORK_DIR, options.get("on_event")) as servers:
        run = _Run(evaluation, settings, out, servers, BatchBudget(options.get("max_batches")), progress)
        samples = {}
        for ref, model in zip(refs, models, strict=True):
            samples[model.slug] = run.generate(ref, model, tasks)
            if progress.interrupted:
                return EvalOutcome(out, None, progress)
        judged = evaluation.judged_sets(tasks)
        results = [evaluation.result(m, run.judge(m, samples[m.slug], judged)) for m in models]
    report = evaluation.report(results)
    write_report(report, out)
    return EvalOutcome(out, report, progress)


@dataclass
class _Run(Generic[S, R]):
    evaluation: Evaluation[S, R]
    settings: RunSettings
    out: Path
    servers: EvalServers
    budget: BatchBudget
    progress: Progress

    def generate(self, ref: ModelRef, model: ModelInfo, tasks: Sequence[Task[S]]) -> JsonlStore:
        """Pin what decides the samples' text (a resume with other settings is refused), then
        generate what the model's sample file lacks."""
        evaluation, settings = self.evaluation, self.settings
        folder = self.out / model.slug
        pin_settings(
            folder / "settings.json",
            {
                "eval": evaluation.name,
                "model": model.model_dump(mode="json", exclude={"spec", "slug"}),
                "data": _data_pin(evaluation.data),
                "decoding": settings.decoding.model_dump(mode="json"),
                "seed": settings.seed,
                **evaluation.pinned(),
            },
        )
        file = evaluation.samples_file
        store = JsonlStore(folder / file.name, file.key)

        def request(sample: S) -> ChatRequest:
            params = settings.decoding.model_copy(update={"seed": sample.seed})
            return ChatRequest(messages=evaluation.messages(sample), params=params)

        def record(task: Task[S], completion: Completion) -> dict[str, Any]:
            return {
                **dict(zip(file.key, task.key, strict=True)),
                "seed": task.payload.seed,
                **evaluation.record(task.payload),
                file.text: completion.text,
                "finish_reason": completion.finish_reason,
                "completion_tokens": completion.completion_tokens,
            }

        open_model = partial(open_backend, ref, settings.backend, self.servers, settings.decoding, model.slug)
        generate_missing(
            store,
            tasks,
            request,
            record,
            open_model,
            chunk=settings.chunk,
            budget=self.budget,
            progress=self.progress,
            label=f"generating {model.slug}",
        )
        return store

    def judge(
        self, model: ModelInfo, samples: JsonlStore, judged: Sequence[JudgedSet[S]]
    ) -> dict[str, JsonlStore]:
        """Judge the model's stored samples that lack a verdict, set by set; the verdicts by set name."""
        verdicts = {}
        for judged_set in judged:
            file = self.out / model.slug / f"verdicts-{judged_set.judge.key}.jsonl"
            store = JsonlStore(file, samples.key_fields)
            items = [
                Task(t.key, self.evaluation.judge_item(t.payload, record))
                for t in judged_set.tasks
                if (record := samples.get(t.key)) is not None
            ]
            judge_missing(
                store,
                items,
                partial(judged_set.judge.open, self.servers),
                chunk=self.settings.chunk,
                progress=self.progress,
                label=f"{judged_set.label} {model.slug}",
            )
            verdicts[judged_set.name] = store
        return verdicts


def _data_pin(data: DataInfo) -> dict[str, Any]:
    """What of a data set decides the samples generated from it."""
    return {"source": data.source, "revision": data.revision, "split": data.split}


def count_verdicts(
    verdicts: JsonlStore, cells: Sequence[Sequence[Sequence[Key]]]
) -> tuple[list[list[int]], list[list[int]]]:
    """`cells[r][j]`: the sample keys of row r in column j (C²-Eval: a k) → the tables `yes[r][j]` and
    `judged[r][j]` the metrics and their intervals are computed from; a sample without a verdict
    (failed) counts in neither."""
    yes = [[0] * len(row) for row in cells]
    judged = [[0] * len(row) for row in cells]
    for r, row in enumerate(cells):
        for j, keys in enumerate(row):
            for key in keys:
                record = verdicts.get(key)
                if record is not None:
                    judged[r][j] += 1
                    yes[r][j] += bool(record["verdict"])
    return yes, judged
