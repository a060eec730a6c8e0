"""Live progress of a run: steps append one line per batch to a file; the CLI shows it with rich.

Steps run in distilabel's worker processes (or Ray actors), so they report through a small JSONL file
(`DIR/.work/progress.jsonl`, appends of one short line are atomic) instead of shared memory.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

ENV_VAR = "SAFEPREF_PROGRESS_FILE"


def report_batch(stage: str, rows: int, tokens: int) -> None:
    """Called by a step after each batch; a no-op when no run is watching."""
    path = os.environ.get(ENV_VAR)
    if not path:
        return
    line = json.dumps({"stage": stage, "rows": rows, "tokens": tokens, "t": time.time()}) + "\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)


def report_total(rows: int) -> None:
    """Called by the engine once the source is read: the number of rows the first stage will see."""
    report_batch("__total__", rows, 0)


class ProgressWatcher:
    """Tails the progress file and drives one rich progress bar per stage (rows/s, tokens/s, ETA)."""

    def __init__(self, path: Path, stages: list[str]) -> None:
        self.path, self.stages = path, stages
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
        tokens: dict[str, int] = {}
        with Progress(*columns, transient=False) as progress:
            tasks = {s: progress.add_task(s, total=None, rate="", count="") for s in self.stages}
            offset = 0
            while not self._stop.is_set():
                offset = self._drain(progress, tasks, tokens, offset)
                self._stop.wait(0.5)
            self._drain(progress, tasks, tokens, offset)

    def _drain(
        self,
        progress: Any,
        tasks: dict[str, Any],
        tokens: dict[str, int],
        offset: int,
    ) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except OSError:
            return offset
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written is read next time
        offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            stage = event.get("stage")
            if stage == "__total__":
                for task_id in tasks.values():
                    total = int(event["rows"])
                    progress.update(task_id, total=total, count=f"0/{total:,} rows")
                continue
            if stage not in tasks:
                continue
            tokens[stage] = tokens.get(stage, 0) + int(event.get("tokens", 0))
            task = progress.tasks[tasks[stage]]
            done = task.completed + int(event.get("rows", 0))
            if done > (task.total or 0):  # expanding stages make more rows than the source had
                progress.update(tasks[stage], total=done)
            elapsed = max(event["t"] - self.t0, 1e-6)  # rates count from the run's start, waiting included
            rate = f"{done / elapsed:,.1f} rows/s" + (
                f", {tokens[stage] / elapsed:,.0f} tok/s" if tokens[stage] else ""
            )
            total = progress.tasks[tasks[stage]].total
            count = f"{done:,}/{total:,.0f} rows" if total else f"{done:,} rows"
            progress.update(tasks[stage], completed=done, rate=rate, count=count)
        return offset
