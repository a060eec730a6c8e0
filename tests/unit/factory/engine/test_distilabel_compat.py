"""distilabel's write buffer, as the engine runs it: files of one leaf step whose column is all None
in the first rows and text later (a filter reason at scale) are all read back at close."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
from distilabel.pipeline.write_buffer import _WriteBuffer

from factory.core.distilabel_compat import Pipeline  # noqa: F401  (importing it mends distilabel's buffer)


def test_a_column_that_is_none_in_the_first_file_and_text_later_survives_close(tmp_path: Path) -> None:
    buffer = _WriteBuffer(tmp_path, {"rank"})
    buffer._buffers["rank"] = [{"_sp_id": "0", "_sp_reason": None}]
    buffer._write("rank")  # the first file: the reason column has type null
    buffer._buffers["rank"] = [{"_sp_id": "1", "_sp_reason": "degenerate_cuts_empty"}]
    buffer._write("rank")
    buffer.close()  # distilabel alone fails here: Unsupported cast from string to null
    rows = sorted(
        (r for f in sorted((tmp_path / "rank").glob("*.parquet")) for r in pq.read_table(f).to_pylist()),
        key=lambda r: r["_sp_id"],
    )
    assert rows == [
        {"_sp_id": "0", "_sp_reason": None},
        {"_sp_id": "1", "_sp_reason": "degenerate_cuts_empty"},
    ]
