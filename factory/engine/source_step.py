"""The pipeline's first step: the source rows, read from a file in the step's own process.

distilabel forks one process per step from the engine's process, and a fork starts with a copy of
everything the engine holds: source rows kept in the engine while the pipeline starts are counted once
more in every step (at 750,000 pairs that was most of the 2 GB summed RSS). So the engine writes the
rows it read (`write_rows`), lets go of them (`factory.core.memory.release_freed_memory`), and this step reads them back
batch by batch.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from factory.core.distilabel_compat import GeneratorStep, signature_defaults

if TYPE_CHECKING:
    from distilabel.typing import GeneratorStepOutput


def write_rows(path: Path, rows: list[dict[str, Any]], batch_size: int) -> None:
    """The row count, then the rows in pickled batches: a reader holds one batch at a time. Pickle
    (not JSON or parquet) keeps every value exactly as the source gave it; the file is this run's own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(len(rows), fh)
        for start in range(0, len(rows), batch_size):
            pickle.dump(rows[start : start + batch_size], fh, protocol=pickle.HIGHEST_PROTOCOL)


class LoadRowsFile(GeneratorStep):
    """Yields the rows `write_rows` stored, in order, `batch_size` at a time."""

    path: str
    columns: list[str] = Field(description="the rows' columns (the first row's keys)")
    # where the run's folder sits does not change what the step yields
    exclude_from_signature: set[str] = Field(default=signature_defaults | {"path"}, exclude=True)

    @property
    def outputs(self) -> list[str]:  # type: ignore[override]
        return list(self.columns)

    def process(self, offset: int = 0) -> GeneratorStepOutput:  # type: ignore[override]
        with open(self.path, "rb") as fh:
            remaining = pickle.load(fh) - offset
            buffer: list[dict[str, Any]] = []
            skip = offset
            while remaining > 0:
                while len(buffer) < min(self.batch_size, remaining):
                    chunk = pickle.load(fh)
                    cut = min(skip, len(chunk))
                    buffer.extend(chunk[cut:])
                    skip -= cut
                batch, buffer = buffer[: self.batch_size], buffer[self.batch_size :]
                remaining -= len(batch)
                yield batch, remaining == 0
