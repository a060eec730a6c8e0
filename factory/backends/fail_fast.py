"""Stopping a run on what no row can fix, from inside distilabel's worker processes.

A step cannot end distilabel's pipeline from a worker, and a failure raised there only empties the batch.
So a step that meets such an error (a UserError: a template that does not render, a model that does not
load, a refused API key) or sees its stage quarantine more than `max_quarantine_share` of its rows
records the reason once in `.work/stopped.json`; from then on every step passes its rows through
without LLM work (an LLM stage generating its batch stops sending: `WatchedBackend`), and the engine raises the recorded error instead of writing a dataset. Successful
generations stay in the request cache, so the re-run after the fix resumes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core.env import env_vars
from factory.core.errors import RunFailed, UserError

if TYPE_CHECKING:
    from factory.backends.base import Admission, Backend, ChatRequest, Completion

STOP_FILE_ENV = "SAFEPREF_STOP_FILE"
_STOP_CHECK_S = 1.0  # how often at most a stage generating its batch looks whether the run is stopping


@dataclass(frozen=True)
class Stop:
    message: str
    exit_code: int

    def error(self) -> UserError:
        return UserError(self.message) if self.exit_code == UserError.exit_code else RunFailed(self.message)


def stop_run(message: str, exit_code: int) -> None:
    """Record why the run must stop; the first reason wins (later ones are its consequences)."""
    path = os.environ.get(STOP_FILE_ENV)
    if not path:  # a step used outside the engine (tests, benches): nothing to stop
        return
    try:
        with open(path, "x", encoding="utf-8") as fh:
            json.dump({"message": message, "exit_code": exit_code}, fh)
    except FileExistsError:
        pass


def stopped() -> Stop | None:
    """The recorded reason, if the run is stopping."""
    path = os.environ.get(STOP_FILE_ENV)
    if not path:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, or being written this instant: the next batch sees it
        return None
    return Stop(str(data["message"]), int(data["exit_code"]))


@contextmanager
def stop_file(work_dir: Path) -> Iterator[Path]:
    """Point the steps (here and in their worker processes) at a fresh stop file for one run."""
    path = (work_dir / "stopped.json").resolve()
    path.unlink(missing_ok=True)
    with env_vars({STOP_FILE_ENV: str(path)}):
        yield path


def raise_if_stopped() -> None:
    stop = stopped()
    if stop is not None:
        raise stop.error()


class QuarantineWatch:
    """One stage's share of quarantined rows (or failed requests: `unit`), judged once `min_rows` of
    them have passed through it."""

    def __init__(self, stage: str, max_share: float, min_rows: int, unit: str = "rows") -> None:
        self.stage, self.max_share, self.min_rows, self.unit = stage, max_share, min_rows, unit
        self.rows = 0
        self.quarantined = 0
        self.first_reason: str | None = None
        self.passed = False

    def add(self, rows: int, quarantined_reasons: list[str]) -> bool:
        """Count them; True once the share is passed (the run is then stopping)."""
        self.rows += rows
        self.quarantined += len(quarantined_reasons)
        if self.first_reason is None and quarantined_reasons:
            self.first_reason = quarantined_reasons[0]
        if not self.passed and self.rows >= self.min_rows and self.quarantined > self.max_share * self.rows:
            self.passed = True
            stop_run(
                f"stage {self.stage!r} quarantined {self.quarantined} of {self.rows} {self.unit}, more "
                f"than max_quarantine_share {self.max_share:g}; first reason: {self.first_reason}",
                RunFailed.exit_code,
            )
        return self.passed

    def unjudged(self) -> int:
        """How many more must pass before the share is judged (0 once it is, or when it cannot pass)."""
        return 0 if self.max_share >= 1 else max(0, self.min_rows - self.rows)


class WatchedBackend:
    """A stage's backend whose failed requests count against max_quarantine_share as each answer
    arrives: an LLM stage takes all its rows in one batch (factory/backends/request_window.py), so a watch
    judged per batch would only stop the run after every request was sent.

    Until the share can be judged, a stage sends only the requests that will judge it, at least one
    `window` of requests in flight; the rest follow as soon as it holds, into the slots that free up
    (the window never drains for it). Once it is passed, or another stage has stopped the run, the
    requests not yet sent are not sent: they come back failed with the reason the run stops."""

    def __init__(self, backend: Backend, watch: QuarantineWatch, window: int) -> None:
        self.inner, self.watch, self.window = backend, watch, window
        self.model_id, self.revision = backend.model_id, backend.revision

    @property
    def in_flight(self) -> int | None:
        return getattr(self.inner, "in_flight", None)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        from factory.backends.base import in_order

        return in_order(len(requests), self.stream(requests))

    def stream(
        self, requests: Sequence[ChatRequest], admission: Admission | None = None
    ) -> Iterator[tuple[int, Completion]]:
        """`admission` is this class's own: a caller above it does not hold requests back."""
        from factory.backends.base import Admission, failed, is_failure, stream_completions

        answered: set[int] = set()
        if not self.watch.passed:
            unjudged = self.watch.unjudged()
            held = Admission(max(unjudged, self.window) if unjudged else None)
            pairs = stream_completions(self.inner, requests, max(1, len(requests)), held)
            checked, unchecked = time.monotonic(), 0
            try:
                for i, completion in pairs:
                    answered.add(i)
                    yield i, completion
                    if self.watch.add(1, [str(completion.error)] if is_failure(completion) else []):
                        break
                    # another stage may have stopped the run meanwhile (the stop file): looked at
                    # once a window of answers or a second, not once per answer
                    unchecked += 1
                    if unchecked >= self.window or time.monotonic() - checked >= _STOP_CHECK_S:
                        if stopped() is not None:
                            break
                        checked, unchecked = time.monotonic(), 0
                    if held.limit is not None and not self.watch.unjudged():
                        held.open()
            finally:
                pairs.close()  # a streaming backend sends none of the requests left
        if len(answered) < len(requests):
            stop = stopped()
            reason = f"run stopped: {stop.message if stop else self.watch.first_reason}"
            for i in range(len(requests)):
                if i not in answered:
                    yield i, failed(reason)

    def close(self) -> None:
        self.inner.close()
