"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included),
and a Pipeline that writes its resume cache once, at the end, and leaves Ctrl-C to the run."""

import os
import signal
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
with warnings.catch_warnings():
    # distilabel 1.5.3's models trigger pydantic 2.14 UnsupportedFieldAttributeWarning at import
    warnings.simplefilter("ignore")
    import distilabel.pipeline.base as _distilabel_base
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
    the files' schemas first (null widens to the other type), then close as distilabel does."""
    for step_name, buffered in self._buffers.items():
        if buffered:
            self._write(step_name)
        files = list_files_in_dir(self._path / step_name)
        if files and step_name in self._buffer_last_schema:
            schemas = [pq.read_schema(f) for f in files]
            self._buffer_last_schema[step_name] = pa.unify_schemas(schemas, promote_options="permissive")
    _distilabel_close(self)


_distilabel_close = _WriteBuffer.close
_WriteBuffer.close = _close_with_unified_schemas  # type: ignore[method-assign]


_POLL_S = 0.05


class _FasterPolling:
    """`time` for distilabel's pipeline module, whose only sleeps are its polls: whether every step has
    loaded (every 2.5 s, so a run's batches started up to 2.5 s after its steps were ready) and whether
    they have finished (every 0.5 s). Checking costs nothing next to a step's work."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, _POLL_S))


_distilabel_base.time = _FasterPolling()  # type: ignore[assignment]


class Pipeline(_DistilabelPipeline):
    """distilabel's local Pipeline, saving its cache (the pipeline, the batch manager with every buffered
    batch, the stages) only when the run ends instead of after every batch, and without a JSON copy of
    every step's every batch (`steps_data`): at scale both cost more than the steps' own work (profiled
    on bench/c2syn_scale.py). The engine never resumes from distilabel's mid-run state (an unfinished
    run restarts; its LLM answers come from the request cache); it only reloads a finished run, which
    the final save covers.

    Also without distilabel's SIGINT handler: it waits for in-flight batches on the first Ctrl-C and
    needs a third one to stop, and it waited for ever on a hung worker. The run's own handler
    (factory.engine.processes) stays in place instead.

    `before_first_batch` (the engine's wait for its model servers) runs once every step has loaded and
    before any batch flows, so the workers start while the servers load their models; what it raises
    ends the run as a step that failed to load does, and `run()` raises it."""

    _finalizing = False
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


__all__ = ["GeneratorStep", "Pipeline", "Step", "StepInput", "signature_defaults"]
