"""Reading parquet files that a user or a crash may have damaged: one clear error instead of pyarrow's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from factory.core.errors import UserError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


def open_parquet(path: Path) -> pq.ParquetFile:
    """The file's reader; a truncated or non-parquet file is a UserError naming it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable parquet file ({_first_line(exc)})", where=str(path)) from None


def iter_parquet_batches(path: Path, batch_size: int) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches (memory stays bounded); damage found on the way is a UserError."""
    import pyarrow as pa

    reader = open_parquet(path)
    try:
        yield from reader.iter_batches(batch_size=batch_size)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable parquet file ({_first_line(exc)})", where=str(path)) from None


def read_parquet(path: Path) -> pa.Table:
    """The whole table; damage anywhere in the file is a UserError naming it."""
    import pyarrow as pa

    reader = open_parquet(path)
    try:
        return reader.read()
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable parquet file ({_first_line(exc)})", where=str(path)) from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
