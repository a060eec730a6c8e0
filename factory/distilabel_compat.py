"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included),
and a Pipeline that writes its resume cache once, at the end, and leaves Ctrl-C to the run."""

import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
with warnings.catch_warnings():
    # distilabel 1.5.3's models trigger pydantic 2.14 UnsupportedFieldAttributeWarning at import
    warnings.simplefilter("ignore")
    import distilabel.pipeline.base as _base_module
    import distilabel.pipeline.local as _local_module
    import distilabel.pipeline.ray as _ray_module
    from distilabel.constants import DISTILABEL_METADATA_KEY, STEPS_OUTPUTS_PATH
    from distilabel.mixins.signature import _EXCLUDE_FROM_SIGNATURE_DEFAULTS as signature_defaults
    from distilabel.pipeline import Pipeline as _DistilabelPipeline
    from distilabel.pipeline.batch import _Batch
    from distilabel.pipeline.write_buffer import _WriteBuffer
    from distilabel.steps import GeneratorStep, Step, StepInput
    from distilabel.utils.files import list_files_in_dir

sys.excepthook = _hook


def _name_batch(batch: Any) -> None:
    batch.data_hash = uuid.uuid4().hex


# A batch's data hash only names its file in distilabel's resume cache (written once, at the end, see
# Pipeline below). distilabel computes it as sha1(str(data)) on every batch a step returns, which was
# a tenth of the CPU of a paper-scale run; a unique name does the same job.
_Batch._update_data_hash = _name_batch


def _close_with_unified_schemas(self: _WriteBuffer) -> None:
    """distilabel's write buffer keeps its FIRST file's schema when a later file has the same columns
    with other types (a column all None in the first rows, strings later: a filter reason at scale),
    then fails at close re-reading the files with it (`Unsupported cast from string to null`). Unify
    the files' schemas (null widens to the other type) and rewrite the files that differ from it;
    distilabel rewrote every file, which at paper scale re-encoded 300 MB for nothing."""
    for step_name, buffered in self._buffers.items():
        if buffered:
            self._write(step_name)
        files = list_files_in_dir(self._path / step_name)
        if not files or step_name not in self._buffer_last_schema:
            continue
        schemas = [pq.read_schema(f) for f in files]
        unified = pa.unify_schemas(schemas, promote_options="permissive")
        for file, schema in zip(files, schemas, strict=True):
            if not schema.equals(unified):
                pq.write_table(pq.read_table(file, schema=unified), file)


_WriteBuffer.close = _close_with_unified_schemas  # type: ignore[method-assign]


class LeafRows:
    """The rows one leaf step of a run wrote through distilabel's write buffer (parquet files, in order)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def _columns(self, file: Path) -> list[str]:
        return [c for c in pq.read_schema(file).names if c != DISTILABEL_METADATA_KEY]

    def column(self, name: str) -> list[Any]:
        return [v for f in self.files for v in pq.read_table(f, columns=[name]).column(name).to_pylist()]

    def rows(self, order: list[int] | None = None, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row as a dict, in file order or in `order` (row positions), `batch_size` at a time."""
        if order is None:
            for file in self.files:
                reader = pq.ParquetFile(file)
                for batch in reader.iter_batches(batch_size=batch_size, columns=self._columns(file)):
                    yield from batch.to_pylist()
            return
        table = pa.concat_tables(pq.read_table(f, columns=self._columns(f)) for f in self.files)
        for start in range(0, len(order), batch_size):
            yield from table.take(order[start : start + batch_size]).to_pylist()


class StepOutputs:
    """What a pipeline run returns here in place of distilabel's Distiset: each leaf step's rows, read
    with pyarrow. `create_distiset` loaded them with `datasets`, which first copied them into an Arrow
    cache under ~/.cache/huggingface/datasets (300 MB and seconds per run at paper scale, never removed)."""

    def __init__(self, data_dir: Path) -> None:
        folder = Path(data_dir) / STEPS_OUTPUTS_PATH
        steps = sorted(d for d in folder.iterdir() if d.is_dir()) if folder.is_dir() else []
        self.leaves = {d.name: LeafRows(list_files_in_dir(d)) for d in steps}

    def leaf(self) -> LeafRows:
        """The rows of the pipeline's only leaf step (the engine's pipelines are chains)."""
        (rows,) = self.leaves.values()
        return rows


def _step_outputs(data_dir: Path, *_: Any, **__: Any) -> StepOutputs:
    return StepOutputs(data_dir)


for _module in (_base_module, _local_module, _ray_module):
    _module.create_distiset = _step_outputs  # type: ignore[attr-defined]


class _ShortPolls:
    """`time` for distilabel's pipeline module, whose loops poll the steps' state with time.sleep: 2.5 s
    between checks whether the steps have loaded, 0.5 s whether they have stopped. A run waited up to
    3 s for steps that load and stop in a fraction of one; these polls take 0.05 s."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, 0.05))


_base_module.time = _ShortPolls()  # type: ignore[attr-defined]


class Pipeline(_DistilabelPipeline):
    """distilabel's local Pipeline, saving its cache (the pipeline, the batch manager with every buffered
    batch, the stages) only when the run ends instead of after every batch, and without a JSON copy of
    every step's every batch (`steps_data`): at scale both cost more than the steps' own work (profiled
    on bench/c2syn_scale.py). The engine never resumes from distilabel's mid-run state (an unfinished
    run restarts; its LLM answers come from the request cache); it only reloads a finished run, which
    the final save covers.

    Also without distilabel's SIGINT handler: it waits for in-flight batches on the first Ctrl-C and
    needs a third one to stop, and it waited for ever on a hung worker. The run's own handler
    (factory.processes) stays in place instead."""

    _finalizing = False

    def run(self, *args: Any, **kwargs: Any) -> StepOutputs:  # type: ignore[override]
        """distilabel's run, with the objects its forked workers inherit frozen (factory.processes)."""
        from factory.processes import frozen_gc

        with frozen_gc():
            return super().run(*args, **kwargs)  # type: ignore[return-value]

    def _handle_keyboard_interrupt(self) -> Any:
        return signal.getsignal(signal.SIGINT)

    def _register_batch(self, batch: Any) -> None:
        assert self._batch_manager is not None
        self._batch_manager.register_batch(batch)

    def _cache(self) -> None:
        if self._finalizing:
            super()._cache()

    def _finalize_pipeline_execution(self) -> None:
        self._finalizing = True
        try:
            super()._finalize_pipeline_execution()
        finally:
            self._finalizing = False


__all__ = ["GeneratorStep", "LeafRows", "Pipeline", "Step", "StepInput", "StepOutputs", "signature_defaults"]
