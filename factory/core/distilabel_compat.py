"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included),
and a Pipeline (and its Ray form) that writes its resume cache once, at the end, leaves Ctrl-C to the
run, and returns its last stage's rows as parquet files read with pyarrow (`StepOutputs`) instead of a
Distiset; the local one passes batches through pipes its workers inherit (no manager process)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.queues import Queue as _ProcessQueue
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.core.errors import RunFailed

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
    from distilabel.pipeline import RayPipeline as _DistilabelRayPipeline
    from distilabel.pipeline.base import BasePipeline as _BasePipeline
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


def _close_without_rewriting(self: _WriteBuffer) -> None:
    """distilabel's close writes what is still buffered, then re-reads every file and writes it again
    under the last schema it saw: at paper scale 300 MB re-encoded, and it failed when a later file had
    a column's values where the first had only None (`Unsupported cast from string to null`: a filter
    reason at scale). The files stay as written; `LeafRows` reads them under their unified schema."""
    for step_name, buffered in self._buffers.items():
        if buffered:
            self._write(step_name)


_WriteBuffer.close = _close_without_rewriting  # type: ignore[method-assign]


class LeafRows:
    """The rows one leaf step of a run wrote through distilabel's write buffer (parquet files, in order),
    under the files' unified schema: a column that is all None in one file (type null) and text in
    another reads as text, and every row has the same columns in the same order."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files
        self.schemas = [pq.read_schema(f) for f in files]
        unified = pa.unify_schemas(self.schemas, promote_options="permissive") if files else pa.schema([])
        self.schema = pa.schema([f for f in unified if f.name != DISTILABEL_METADATA_KEY])

    def column(self, name: str) -> list[Any]:
        values: list[Any] = []
        for file, schema in zip(self.files, self.schemas, strict=True):
            if name in schema.names:
                values.extend(pq.read_table(file, columns=[name]).column(name).to_pylist())
            else:
                values.extend([None] * pq.read_metadata(file).num_rows)
        return values

    def _batches(self, file: Path, schema: pa.Schema, batch_size: int) -> Iterator[pa.RecordBatch]:
        columns = [c for c in schema.names if c in self.schema.names]
        for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_size, columns=columns):
            yield batch if batch.schema.equals(self.schema) else self._conform(batch)

    def _conform(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        arrays = [
            batch.column(f.name).cast(f.type)
            if f.name in batch.schema.names
            else pa.nulls(len(batch), f.type)
            for f in self.schema
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    def rows(self, order: list[int] | None = None, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row as a dict, in file order or in `order` (row positions), `batch_size` at a time."""
        if order is None:
            for file, schema in zip(self.files, self.schemas, strict=True):
                for batch in self._batches(file, schema, batch_size):
                    yield from batch.to_pylist()
            return
        table = pa.Table.from_batches(
            [
                b
                for f, s in zip(self.files, self.schemas, strict=True)
                for b in self._batches(f, s, batch_size)
            ],
            schema=self.schema,
        )
        for start in range(0, len(order), batch_size):
            yield from table.take(order[start : start + batch_size]).to_pylist()


class StepOutputs:
    """What a pipeline run returns here in place of distilabel's Distiset: each leaf step's rows, read
    with pyarrow. `create_distiset` loaded them with `datasets`, which first copied them into an Arrow
    cache under ~/.cache/huggingface/datasets (300 MB and seconds per run at paper scale, never removed)."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = Path(data_dir) / STEPS_OUTPUTS_PATH
        steps = sorted(d for d in self.folder.iterdir() if d.is_dir()) if self.folder.is_dir() else []
        self.leaves = {d.name: LeafRows(list_files_in_dir(d)) for d in steps}

    def leaf(self) -> LeafRows:
        """The rows of the pipeline's only leaf step (the engine's pipelines are chains)."""
        if not self.leaves:  # its workers ended without writing a batch, or the cache lost its data
            raise RunFailed(f"the pipeline wrote no rows: no step output in {self.folder}")
        if len(self.leaves) > 1:
            raise RuntimeError(f"a chain has one leaf step, this pipeline wrote {sorted(self.leaves)}")
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


class _Abandoned:
    """Put in a queue whose other end died (an interrupted or failed run): the thread waiting on it ends."""


_INHERITED: list[_ProcessQueue[Any]] = []  # the queues of the run being set up, found by index


def _inherited_queue(index: int) -> _ProcessQueue[Any]:
    return _INHERITED[index]


class _InheritedQueue(_ProcessQueue):  # type: ignore[type-arg]
    """A multiprocessing queue made before distilabel's pool forks the step workers, which inherit it.

    distilabel passes batches through `multiprocessing.Manager().Queue()`: every batch, both ways, was
    pickled into the manager's server process and out again, a seventh process of 200 MB that spent
    more CPU than most steps (profiled on bench/c2syn_scale.py). A queue shared by inheritance is a
    pipe between the two processes. distilabel pickles each step's queues into its pool task; they
    travel as their index into `_INHERITED`, which the forked workers hold too."""

    def __init__(self, index: int) -> None:
        super().__init__(ctx=mp.get_context())
        self._index = index

    def __reduce__(self) -> tuple[Callable[[int], _ProcessQueue[Any]], tuple[int]]:
        return _inherited_queue, (self._index,)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        item = super().get(block, timeout)
        if isinstance(item, _Abandoned):
            # the thread that waited (distilabel's load or output loop) ends quietly: threading ignores
            # a SystemExit (exactly that class) in a thread, where an EOFError printed a traceback
            # whenever it died after the run had given the thread exception hook back
            raise SystemExit("the run was stopped")
        return item


class _CacheOnceAtEnd:
    """distilabel's pipeline saving its cache (the pipeline, the batch manager with every buffered
    batch, the stages) only when the run ends instead of after every batch, and without a JSON copy of
    every step's every batch (`steps_data`): at scale both cost more than the steps' own work (profiled
    on bench/c2syn_scale.py). The engine never resumes from distilabel's mid-run state (an unfinished
    run restarts; its LLM answers come from the request cache); it only reloads a finished run, which
    the final save covers. Mixed into the local and the Ray pipeline alike."""

    _finalizing = False
    _batch_manager: Any

    def _register_batch(self, batch: Any) -> None:
        assert self._batch_manager is not None
        self._batch_manager.register_batch(batch)

    def _cache(self) -> None:
        if self._finalizing:
            super()._cache()  # type: ignore[misc]

    def _finalize_pipeline_execution(self) -> None:
        self._finalizing = True
        try:
            super()._finalize_pipeline_execution()  # type: ignore[misc]
        finally:
            self._finalizing = False


class RayPipeline(_CacheOnceAtEnd, _DistilabelRayPipeline):
    """distilabel's RayPipeline with the cache written once, at the end (`--executor ray`)."""


class Pipeline(_CacheOnceAtEnd, _DistilabelPipeline):
    """distilabel's local Pipeline with the cache written once, at the end, and without distilabel's
    SIGINT handler: it waits for in-flight batches on the first Ctrl-C and needs a third one to stop,
    and it waited for ever on a hung worker. The run's own handler (factory.engine.processes) stays in
    place instead.

    `before_first_batch` (the engine's wait for its model servers) runs once every step has loaded and
    before any batch flows, so the workers start while the servers load their models; what it raises
    ends the run as a step that failed to load does, and `run()` raises it."""

    before_first_batch: Callable[[], None] | None = None

    def _initialize_pipeline_execution(self) -> bool:  # distilabel's, with the hook
        if not self._run_stage_steps_and_wait(stage=self._current_stage):
            self._set_steps_not_loaded_exception()
            return False
        if self.before_first_batch is not None:
            try:
                self.before_first_batch()
            except Exception as exc:  # run() raises it in the engine's thread
                self._exception = exc
                return False
        self._request_initial_batches()
        return True

    def run(self, *, use_cache: bool = True) -> StepOutputs:  # type: ignore[override]
        """distilabel's local run (distilabel/pipeline/local.py), with its queues made before the pool
        forks the workers (`_InheritedQueue`) instead of by a manager process, and the objects the
        workers inherit frozen out of the garbage collector (factory.core.memory)."""
        from distilabel.pipeline.local import _init_worker, _NoDaemonPool
        from distilabel.utils.logging import stop_logging

        from factory.core.memory import frozen_gc

        self._log_queue: Any = mp.Queue()
        self._manager = None  # distilabel's teardown stops it when there is one
        self._output_queue_thread = self._load_steps_thread = None
        # distilabel's log listener (a thread, a file handler and the queue) is stopped however the run
        # ends: distilabel stops it only on success, so a long-lived process kept one per failed run
        try:
            with frozen_gc():
                cached = _BasePipeline.run(self, use_cache=use_cache)
                if cached is not None:  # a finished run, reloaded from distilabel's cache
                    return cached  # type: ignore[no-any-return]
                # an input queue per step, distilabel's output and load queues
                _INHERITED[:] = [_InheritedQueue(i) for i in range(len(self.dag) + 2)]
                self._queue_supply = iter(_INHERITED)
                try:
                    with _NoDaemonPool(
                        self.dag.get_total_replica_count(),
                        initializer=_init_worker,
                        initargs=(self._log_queue, self.name, self.signature),
                    ) as pool:
                        self._pool = pool
                        self._output_queue = self.QueueClass()
                        self._load_queue = self.QueueClass()
                        self._handle_keyboard_interrupt()
                        self._load_steps_thread = self._run_load_queue_loop_in_thread()
                        self._output_queue_thread = self._run_output_queue_loop_in_thread()
                        # in slices: a Ctrl-C the kernel hands to another thread is acted on only when
                        # the main thread runs Python again (an endless join would hold it back)
                        while self._output_queue_thread.is_alive():
                            self._output_queue_thread.join(0.2)
                        self._teardown()
                        if self._exception:
                            raise self._exception
                finally:
                    self._release_queues()
            return _step_outputs(self._cache_location["data"])
        finally:
            stop_logging()

    @property
    def QueueClass(self) -> Callable[[], _ProcessQueue[Any]]:  # noqa: N802 (distilabel's name)
        return lambda: next(self._queue_supply)

    def _release_queues(self) -> None:
        """Wake distilabel's loops if they still wait (an interrupted run's workers are gone), and let
        this process exit without flushing what nobody will read."""
        for thread, queue in (
            (self._output_queue_thread, getattr(self, "_output_queue", None)),
            (self._load_steps_thread, getattr(self, "_load_queue", None)),
        ):
            if thread is not None and thread.is_alive() and isinstance(queue, _InheritedQueue):
                queue.put(_Abandoned())
        for queue in _INHERITED:
            queue.cancel_join_thread()
            queue.close()
        _INHERITED.clear()

    def _handle_keyboard_interrupt(self) -> Any:
        return signal.getsignal(signal.SIGINT)

    def ray(
        self, ray_head_node_url: str | None = None, ray_init_kwargs: dict[str, Any] | None = None
    ) -> RayPipeline:
        """This pipeline on Ray, as distilabel's `Pipeline.ray` builds it, with the cache written once."""
        pipeline = RayPipeline(
            name=self.name,
            description=self.description,
            cache_dir=self._cache_dir,
            enable_metadata=self._enable_metadata,
            requirements=self.requirements,
            ray_head_node_url=ray_head_node_url,
            ray_init_kwargs=ray_init_kwargs,
        )
        pipeline.dag = self.dag
        return pipeline


__all__ = [
    "GeneratorStep",
    "LeafRows",
    "Pipeline",
    "RayPipeline",
    "Step",
    "StepInput",
    "StepOutputs",
    "signature_defaults",
]
