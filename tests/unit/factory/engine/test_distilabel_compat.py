"""distilabel's write buffer, as the engine runs it, and the engine's reading of what it wrote: files of
one leaf step whose column is all None in the first rows and text later (a filter reason at scale)
are read back under one schema, every row with the same columns in the same order."""

from __future__ import annotations

from pathlib import Path

import pytest
from distilabel.pipeline.write_buffer import _WriteBuffer

from factory.core.distilabel_compat import LeafRows, StepOutputs


def test_a_column_that_is_none_in_the_first_file_and_text_later_reads_back_as_text(tmp_path: Path) -> None:
    buffer = _WriteBuffer(tmp_path / "steps_outputs", {"rank"})
    buffer._buffers["rank"] = [{"_sp_id": "0", "_sp_reason": None}]
    buffer._write("rank")  # the first file: the reason column has type null
    buffer._buffers["rank"] = [{"_sp_id": "1", "_sp_reason": "degenerate_cuts_empty"}]
    buffer._write("rank")
    buffer._buffers["rank"] = [{"_sp_id": "2", "_sp_reason": None}]
    buffer.close()  # distilabel alone fails here: Unsupported cast from string to null
    leaf = StepOutputs(tmp_path).leaf()
    assert str(leaf.schema.field("_sp_reason").type) == "string"
    assert list(leaf.rows()) == [
        {"_sp_id": "0", "_sp_reason": None},
        {"_sp_id": "1", "_sp_reason": "degenerate_cuts_empty"},
        {"_sp_id": "2", "_sp_reason": None},
    ]
    assert leaf.column("_sp_id") == ["0", "1", "2"]
    assert [r["_sp_id"] for r in leaf.rows(order=[2, 0, 1], batch_size=2)] == ["2", "0", "1"]


def test_rows_of_files_with_other_column_orders_or_missing_columns_share_one_layout(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a").mkdir()
    pq.write_table(
        pa.Table.from_pylist([{"_sp_id": "0", "x": 1, "y": "a"}]), tmp_path / "a" / "00001.parquet"
    )
    pq.write_table(pa.Table.from_pylist([{"y": "b", "_sp_id": "1"}]), tmp_path / "a" / "00002.parquet")
    rows = list(LeafRows([tmp_path / "a" / "00001.parquet", tmp_path / "a" / "00002.parquet"]).rows())
    assert rows == [{"_sp_id": "0", "x": 1, "y": "a"}, {"_sp_id": "1", "x": None, "y": "b"}]
    assert [list(r) for r in rows] == [["_sp_id", "x", "y"], ["_sp_id", "x", "y"]]


def test_a_run_that_fails_leaves_no_log_listener_behind(tmp_path: Path) -> None:
    """distilabel's log listener (a thread holding a file handler and a queue) stops however the run
    ends: a long-lived process (the API, an eval loop) kept one per failed run."""
    import threading

    from factory.engine.recipe import load_recipe
    from factory.engine.run import run_recipe
    from tests.unit.factory.engine.test_engine import canned_recipe

    def listeners() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.endswith("(_monitor)")]  # QueueListener's

    before = listeners()
    broken = {"name": "broken", "step": "tests.support.steps_for_tests:FailsToLoad"}
    recipe = load_recipe(str(canned_recipe(tmp_path, extra_stage=broken)))
    with pytest.raises(RuntimeError, match="Failed to load all the steps"):
        run_recipe(recipe, tmp_path / "out", allow_import_steps=True)
    assert listeners() == before  # stopping a listener joins its thread


def test_a_thread_waiting_on_a_stopped_runs_queue_ends_without_a_traceback(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """distilabel's load and output loops wait on the run's queues; when the run stops they are woken
    and end. Their end must not print: the run's one error line is what the user reads, and the
    run gives the thread exception hook back when it ends (factory.engine.processes)."""
    import threading

    from factory.core.distilabel_compat import _Abandoned, _InheritedQueue

    monkeypatch.setattr(threading, "excepthook", threading.__excepthook__)  # Python's own, not pytest's
    queue = _InheritedQueue(0)
    waiting = threading.Thread(target=queue.get)
    waiting.start()
    queue.put(_Abandoned())
    waiting.join()
    queue.close()
    assert capfd.readouterr().err == ""


def test_a_pipeline_that_wrote_no_rows_is_a_failed_run_in_one_line(tmp_path: Path) -> None:
    from factory.core.errors import RunFailed

    with pytest.raises(RunFailed, match=r"^the pipeline wrote no rows: no step output in .*steps_outputs$"):
        StepOutputs(tmp_path).leaf()
