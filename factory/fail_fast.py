"""Stopping a run on what no row can fix, from inside distilabel's worker processes.

A step cannot end distilabel's pipeline from a worker, and a failure raised there only empties the batch.
So a step that meets such an error (a UserError: a template that does not render, a model that does not
load, a refused API key) or sees its stage quarantine more than `max_quarantine_share` of its rows
records the reason once in `.work/stopped.json`; from then on every step passes its rows through
without LLM work, and the engine raises the recorded error instead of writing a dataset. Successful
generations stay in the request cache, so the re-run after the fix resumes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from factory.errors import RunFailed, UserError

ENV_VAR = "SAFEPREF_STOP_FILE"


@dataclass(frozen=True)
class Stop:
    message: str
    exit_code: int

    def error(self) -> UserError:
        return UserError(self.message) if self.exit_code == UserError.exit_code else RunFailed(self.message)


def stop_run(message: str, exit_code: int) -> None:
    """Record why the run must stop; the first reason wins (later ones are its consequences)."""
    path = os.environ.get(ENV_VAR)
    if not path:  # a step used outside the engine (tests, benches): nothing to stop
        return
    try:
        with open(path, "x", encoding="utf-8") as fh:
            json.dump({"message": message, "exit_code": exit_code}, fh)
    except FileExistsError:
        pass


def stopped() -> Stop | None:
    """The recorded reason, if the run is stopping."""
    path = os.environ.get(ENV_VAR)
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
    previous = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = previous


def raise_if_stopped() -> None:
    stop = stopped()
    if stop is not None:
        raise stop.error()


class QuarantineWatch:
    """One stage's share of quarantined rows, judged once `min_rows` rows have passed through it."""

    def __init__(self, stage: str, max_share: float, min_rows: int) -> None:
        self.stage, self.max_share, self.min_rows = stage, max_share, min_rows
        self.rows = 0
        self.quarantined = 0
        self.first_reason: str | None = None

    def add(self, rows: int, quarantined_reasons: list[str]) -> None:
        self.rows += rows
        self.quarantined += len(quarantined_reasons)
        if self.first_reason is None and quarantined_reasons:
            self.first_reason = quarantined_reasons[0]
        if self.rows >= self.min_rows and self.quarantined > self.max_share * self.rows:
            stop_run(
                f"stage {self.stage!r} quarantined {self.quarantined} of {self.rows} rows, more than "
                f"max_quarantine_share {self.max_share:g}; first reason: {self.first_reason}",
                RunFailed.exit_code,
            )
