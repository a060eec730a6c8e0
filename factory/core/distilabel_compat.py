"""Import distilabel without the rich traceback hook it installs (that hook prints locals, tokens included),
and a Pipeline (and its Ray form) that writes its resume cache once, at the end, and leaves Ctrl-C to
the run."""

import os
import signal
import sys
import uuid
import warnings
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "WARNING")
_hook = sys.excepthook
with warnings.catch_warnings():
    # distilabel 1.5.3's models trigger pydantic 2.14 UnsupportedFieldAttributeWarning at import
    warnings.simplefilter("ignore")
    from distilabel.mixins.signature import _EXCLUDE_FROM_SIGNATURE_DEFAULTS as signature_defaults
    from distilabel.pipeline import Pipeline as _DistilabelPipeline
    from distilabel.pipeline import RayPipeline as _DistilabelRayPipeline
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
    place instead."""

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


__all__ = ["GeneratorStep", "Pipeline", "RayPipeline", "Step", "StepInput", "signature_defaults"]
