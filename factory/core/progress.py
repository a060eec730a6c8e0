"""Live progress of a run: steps append one line per event to a file; the CLI shows it with rich.

Steps run in distilabel's worker processes (or Ray actors), so they report through a small JSONL file
(`DIR/.work/progress.jsonl`, appends of one short line are atomic) instead of shared memory. Events:
  batch     {"stage", "rows", "rows_out", "t"}: a step finished a batch of `rows` rows, passing on `rows_out`
  requests  {"stage", "requests", "tokens", "in_flight"?, "t"}: answers and generated tokens since the
            last such event, and the requests the stage's backend has in flight now
  total     {"stage": "__total__", "rows", "t"}: the source rows (what the first stage will see)
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRESS_FILE_ENV = "SAFEPREF_PROGRESS_FILE"
TOTAL = "__total__"
TICK_S = 0.5  # how often a stage waiting on its backend reports tokens and requests in flight


def append_event(event: dict[str, Any]) -> None:
    path = os.environ.get(PROGRESS_FILE_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({**event, "t": time.time()}) + "\n")


def report_batch(stage: str, rows: int, rows_out: int) -> None:
    """Called by a step after each batch; a no-op when no run is watching."""
    append_event({"stage": stage, "rows": rows, "rows_out": rows_out})


def report_total(rows: int) -> None:
    """Called by the engine once the source is read: the number of rows the first stage will see."""
    append_event({"stage": TOTAL, "rows": rows})


@dataclass
class StageLine:
    """What one stage's progress line shows."""

    rows_in: int = 0
    rows_out: int = 0
    total: int | None = None  # rows this stage will process (an estimate until upstream has finished)
    requests: int = 0
    tokens: int = 0
    in_flight: int | None = None
    first_request_t: float | None = None
    last_t: float | None = None

    def count(self) -> str:
        return f"{self.rows_in:,}/{self.total:,} rows" if self.total is not None else f"{self.rows_in:,} rows"

    def rate(self, t0: float) -> str:
        parts = []
        if self.last_t is not None:
            parts.append(f"{self.rows_in / max(self.last_t - t0, 1e-6):,.1f} rows/s")
        if self.first_request_t is not None and self.last_t is not None:
            # generation speed counts from the stage's first request, not from the run's start
            parts.append(f"{self.requests:,} answers")
            parts.append(f"{self.tokens / max(self.last_t - self.first_request_t, 1e-6):,.0f} tok/s")
            if self.in_flight is not None:
                parts.append(f"{self.in_flight:,} in flight")
        return ", ".join(parts)


class ProgressState:
    """Per-stage lines from the events. A stage processes what the stage before it passes on, so its
    total is that stage's output so far plus its remaining input at the rate it has expanded so far
    (exact once the stage before it has finished)."""

    def __init__(self, stages: list[str]) -> None:
        self.stages = stages
        self.lines = {s: StageLine() for s in stages}

    def apply(self, event: dict[str, Any]) -> None:
        stage, t = event.get("stage"), float(event.get("t", 0.0))
        if stage == TOTAL:
            self.lines[self.stages[0]].total = int(event["rows"])
        elif stage in self.lines:
            line = self.lines[stage]
            if "requests" in event:
                if line.first_request_t is None:
                    line.first_request_t = t
                line.requests += int(event["requests"])
                line.tokens += int(event.get("tokens", 0))
                line.in_flight = event.get("in_flight", line.in_flight)
            else:
                line.rows_in += int(event.get("rows", 0))
                line.rows_out += int(event.get("rows_out", event.get("rows", 0)))
            line.last_t = t
        else:
            return
        self._propagate_totals()

    def _propagate_totals(self) -> None:
        for before, stage in zip(self.stages, self.stages[1:], strict=False):
            up = self.lines[before]
            if up.total is None:
                return
            ratio = up.rows_out / up.rows_in if up.rows_in else 1.0
            remaining = max(up.total - up.rows_in, 0)
            self.lines[stage].total = up.rows_out + round(remaining * ratio)


class ProgressWatcher:
    """Tails the progress file and drives one rich progress bar per stage (rows/s, tokens/s, in flight)."""

    def __init__(self, path: Path, stages: list[str]) -> None:
        self.path, self.stages = path, stages
        self.state = ProgressState(stages)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProgressWatcher:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self.t0 = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            self._show()
        except Exception as exc:  # a display problem must never stop or hide the run itself
            print(f"(progress display stopped: {type(exc).__name__}: {exc})")

    def _show(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        columns = [
            TextColumn("{task.description:<14}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        ]  # fmt: skip
        with Progress(*columns, transient=False) as progress:
            tasks = {s: progress.add_task(s, total=None, rate="", count="") for s in self.stages}
            offset = 0
            while not self._stop.is_set():
                offset = self._drain(offset)
                self._render(progress, tasks)
                self._stop.wait(TICK_S)
            self._drain(offset)
            self._render(progress, tasks)

    def _drain(self, offset: int) -> int:
        """Apply the events appended since `offset`; returns the new offset."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return offset
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        for line in complete.decode("utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.state.apply(event)
        return offset + len(complete)

    def _render(self, progress: Any, tasks: dict[str, Any]) -> None:
        for stage, task_id in tasks.items():
            line = self.state.lines[stage]
            progress.update(
                task_id, completed=line.rows_in, total=line.total, count=line.count(), rate=line.rate(self.t0)
            )
