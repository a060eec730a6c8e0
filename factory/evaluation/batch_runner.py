"""Generate and judge what a store lacks, appending every `chunk` finished answers (resumable).

The requests stream through the backend's window (a server's client keeps `max_concurrency` in
flight across chunks, no batch barrier): answers are stored in arrival order, a chunk at a time, so a
killed run loses at most the answers of one unstored chunk and the requests in flight."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from factory.backends import Backend, ChatRequest, Completion
from factory.backends.base import is_failure, stream_completions
from factory.evaluation.judges import Judge, JudgeItem
from factory.evaluation.sample_store import JsonlStore, Key

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class BatchBudget:
    """`max_batches` stops a run after that many batches, as if it were killed there (tests, dry runs)."""

    max_batches: int | None = None
    used: int = 0

    def spend(self) -> bool:
        """Take one batch; False when none is left."""
        if self.exhausted:
            return False
        self.used += 1
        return True

    @property
    def exhausted(self) -> bool:
        return self.max_batches is not None and self.used >= self.max_batches


BatchListener = Callable[[str, int, int], None]
"""Told `(label, done, total)` after every batch, e.g. ("generating bundled", 64, 320): drives a bar."""


@dataclass
class Progress:
    generated: int = 0
    generation_failed: int = 0
    judged: int = 0
    judge_failed: int = 0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)  # a few distinct error messages, for the user
    listener: BatchListener | None = None

    def note(self, error: str) -> None:
        if error not in self.errors and len(self.errors) < 5:
            self.errors.append(error)

    def advance(self, label: str, done: int, total: int) -> None:
        if self.listener is not None:
            self.listener(label, done, total)

    def failure(self, max_share: float) -> str | None:
        """Why this evaluation must not pass for a result: more than `max_share` of the generations or
        of the judgements attempted failed (a report over the few that worked would mislead)."""
        for what, failed, done in (
            ("generations", self.generation_failed, self.generated),
            ("judgements", self.judge_failed, self.judged),
        ):
            if failed > max_share * (failed + done):
                first = f"; first error: {self.errors[0]}" if self.errors and what == "generations" else ""
                return f"{failed} of {failed + done} {what} failed (more than --max-failed-share {max_share:g}){first}"
        return None


@dataclass(frozen=True)
class Task(Generic[T]):
    key: Key
    payload: T


def generate_missing(
    store: JsonlStore,
    tasks: Sequence[Task[T]],
    request: Callable[[T], ChatRequest],
    record: Callable[[Task[T], Completion], dict[str, Any]],
    open_backend: Callable[[], Backend],
    *,
    chunk: int,
    budget: BatchBudget,
    progress: Progress,
    label: str = "generating",
) -> None:
    """Generate the tasks whose key `store` lacks; failed completions are not stored (a re-run retries)."""
    todo = [t for t in tasks if t.key not in store]
    if not todo:
        return
    if budget.exhausted:
        progress.interrupted = True  # no batch left: do not even start the model
        return
    backend = open_backend()
    answers = stream_completions(backend, [request(t.payload) for t in todo], chunk)
    try:
        seen = 0
        for batch in _chunks(answers, chunk):
            seen += len(batch)
            finished = []
            for i, completion in batch:
                if is_failure(completion):
                    progress.generation_failed += 1
                    progress.note(completion.error or "")
                else:
                    finished.append(record(todo[i], completion))
            progress.generated += store.append(finished)
            budget.spend()
            progress.advance(label, seen, len(todo))
            if budget.exhausted and seen < len(todo):
                progress.interrupted = True  # stopped as if killed here: the rest stays to do
                return
    finally:
        answers.close()  # stopped early: its unsent requests are cancelled, those in flight dropped
        backend.close()


def judge_missing(
    verdicts: JsonlStore,
    items: Sequence[Task[JudgeItem]],
    open_judge: Callable[[], Judge],
    *,
    chunk: int,
    progress: Progress,
    label: str = "judging",
) -> None:
    """Judge the items whose key `verdicts` lacks; failed verdicts are not stored (a re-run retries)."""
    todo = [t for t in items if t.key not in verdicts]
    if not todo:
        return
    judge = open_judge()
    results = judge.stream([t.payload for t in todo])
    try:
        seen = 0
        for batch in _chunks(results, chunk):
            seen += len(batch)
            finished = [
                {**dict(zip(verdicts.key_fields, todo[i].key, strict=True)), "verdict": verdict}
                for i, verdict in batch
                if verdict is not None
            ]
            progress.judge_failed += len(batch) - len(finished)
            progress.judged += verdicts.append(finished)
            progress.advance(label, seen, len(todo))
    finally:
        results.close()
        judge.close()


def _chunks(results: Iterator[R], size: int) -> Iterator[list[R]]:
    """`results` in lists of `size` as they arrive (the last one shorter): what is stored at a time."""
    batch: list[R] = []
    for result in results:
        batch.append(result)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
