"""The progress watcher never loses a batch whose line it met half-written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.progress import Progress

from factory.progress import ProgressWatcher


def test_a_half_written_line_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    watcher = ProgressWatcher(path, ["generate"])
    watcher.t0 = time.time() - 1
    line = json.dumps({"stage": "generate", "rows": 5, "tokens": 40, "t": time.time()}) + "\n"
    path.write_text(line + line[:10])  # the second event is still being written
    with Progress(disable=True) as progress:
        tasks = {"generate": progress.add_task("generate", total=None, rate="", count="")}
        tokens: dict[str, int] = {}
        offset = watcher._drain(progress, tasks, tokens, 0)
        assert progress.tasks[0].completed == 5 and offset == len(line)
        path.write_text(line + line)  # the writer finished the line
        watcher._drain(progress, tasks, tokens, offset)
        assert progress.tasks[0].completed == 10 and tokens == {"generate": 80}
