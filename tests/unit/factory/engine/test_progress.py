"""The progress watcher never loses an event whose line it met half-written."""

from __future__ import annotations

import json
import time
from pathlib import Path

from factory.core.progress import ProgressWatcher


def test_a_half_written_line_is_read_once_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "progress.jsonl"
    watcher = ProgressWatcher(path, ["generate"])
    batch = json.dumps({"stage": "generate", "rows": 5, "rows_out": 5, "t": time.time()}) + "\n"
    answers = json.dumps({"stage": "generate", "requests": 5, "tokens": 40, "t": time.time()}) + "\n"
    path.write_text(batch + answers[:10])  # the second event is still being written
    offset = watcher._drain(0)
    line = watcher.state.lines["generate"]
    assert (line.rows_in, line.tokens, offset) == (5, 0, len(batch))
    path.write_text(batch + answers)  # the writer finished the line
    watcher._drain(offset)
    assert (line.rows_in, line.requests, line.tokens) == (5, 5, 40)
