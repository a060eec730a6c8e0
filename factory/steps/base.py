"""The step base class every built-in step derives from.

A step only processes rows whose `_sp_status` is `ok` and passes every other row through untouched,
so each input row reaches the writer exactly once. A row that fails raises inside `process_row(s)`;
the base class quarantines that row with the error (and the raw LLM text when there is one) instead
of letting distilabel replace the whole batch by `None`s.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import Field, PrivateAttr

from factory.backends.base import EMPTY_COMPLETION
from factory.backends.fail_fast import QuarantineWatch, WatchedBackend, stop_run, stopped
from factory.backends.metered import MeteredBackend
from factory.backends.prompt_cap import PromptCapped
from factory.backends.request_cache import REQUEST_CACHE_ENV
from factory.backends.request_window import window
from factory.core.distilabel_compat import Step, StepInput
from factory.core.errors import UserError
from factory.core.progress import report_batch
from factory.core.rows import (  # re-exported: steps import their helpers from here
    EXPANSION_SEP,
    RAW,
    REASON,
    ROW_ID,
    STAGE,
    STATUS,
    USAGE,
    RowFailed,
    RowFiltered,
    add_usage,
    child_row,
    count_event,
    is_ok,
    mark,
)

__all__ = [
    "EXPANSION_SEP",
    "ROW_ID",
    "STATUS",
    "SafeprefStep",
    "RowFailed",
    "RowFiltered",
    "add_usage",
    "answer_text",
    "child_row",
    "count_event",
    "mark",
]

if TYPE_CHECKING:
    from distilabel.typing import StepColumns, StepOutput

    from factory.backends import Backend, Completion
    from schemas.generation import GenerationParams


class SafeprefStep(Step):
    """Base of all built-in steps. Subclasses set `required`/`produced` and implement `process_row(s)`."""

    stage: str = Field(description="the recipe's stage name")
    params: dict[str, Any] = Field(default_factory=dict)
    backend_spec: dict[str, Any] | None = None
    seed: int = 0
    template_dir: str | None = Field(
        None, description="the recipe's folder: prompt templates are looked up there, then built in"
    )
    max_quarantine_share: float = 1.0  # the recipe's; above it the run stops (factory/backends/fail_fast.py)
    quarantine_min_rows: int = 10

    required: ClassVar[tuple[str, ...]] = ()
    produced: ClassVar[tuple[str, ...]] = ()
    # True for steps that replace a row by children (`child_row`): per-stage counts use it
    expands: ClassVar[bool] = False

    _backend: "Backend | None" = PrivateAttr(default=None)
    _watch: QuarantineWatch | None = PrivateAttr(default=None)

    @classmethod
    def columns(
        cls, params: dict[str, Any], template_dir: str | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(required, produced) of a stage with these params: the class's own, or, for a generic step,
        the columns its params name and its template reads (looked up in `template_dir`, then among
        the built-in ones). The source must provide what no earlier stage produces."""
        return cls.required, cls.produced

    @property
    def inputs(self) -> "StepColumns":
        return [*self.columns(self.params, self.template_dir)[0], ROW_ID, STATUS]

    @property
    def outputs(self) -> "StepColumns":
        return [*self.columns(self.params, self.template_dir)[1], STATUS, STAGE, REASON, RAW, USAGE]

    # -- LLM access -------------------------------------------------------------------------------
    def load(self) -> None:
        super().load()
        if self.backend_spec is not None:
            from factory.backends import create_backend
            from factory.backends.managed_server import client_spec, served_spec
            from schemas.generation import BackendSpec

            # `transformers` / `vllm` backends are served by the engine's one server per backend: the
            # step is its client (the lookup waits for the first cache miss: a cached run needs none)
            spec = BackendSpec.model_validate(self.backend_spec)
            cache_path = os.environ.get(REQUEST_CACHE_ENV)
            backend: Backend
            if cache_path:  # set by the engine: reuse unchanged generations across runs and edits
                from factory.backends.request_cache import CachedBackend, RequestCache

                backend = CachedBackend(
                    lambda: create_backend(served_spec(spec)),
                    client_spec(spec),
                    RequestCache(Path(cache_path)),
                )
            else:
                backend = create_backend(served_spec(spec))
            # failed requests count against max_quarantine_share as they arrive, not per batch
            watch = QuarantineWatch(
                self.stage, self.max_quarantine_share, self.quarantine_min_rows, "requests"
            )
            backend = WatchedBackend(backend, watch, window(client_spec(spec)))
            # the cap outermost: it forwards unknown attributes, so under it a `stream` would bypass it
            self._backend = PromptCapped(MeteredBackend(self.stage, backend), spec.max_prompt_chars)

    def unload(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        super().unload()

    def render(self, template: str, context: "Mapping[str, Any]") -> str:
        """Render a prompt template from the recipe's folder or the built-in templates (sandboxed).
        `context` is one mapping, so its keys (a row's columns) never collide with an argument."""
        from factory.core.templates import render_template

        return render_template(template, self.template_dir, **context)

    def decoding(self, key: str = "generation") -> "GenerationParams":
        """The backend's decoding with this stage's `params[key]` overrides on top."""
        from schemas.generation import merged_decoding

        assert self.backend_spec is not None
        return merged_decoding(self.backend_spec.get("generation"), self.params.get(key))

    @property
    def backend(self) -> "Backend":
        if self._backend is None:
            raise RuntimeError(f"stage {self.stage!r} has no backend loaded")
        return self._backend

    # -- row processing ---------------------------------------------------------------------------
    def process_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Process the `ok` rows of a batch in place (return None), or return rows that replace them.

        An expanding step (one row -> many) returns children made with `child_row`; a parent that
        yields no child must be marked filtered or quarantined and returned too, so no row vanishes.
        Default: one row at a time, in place.
        """
        for row in rows:
            self.guarded(row, self.process_row)
        return None

    def process_row(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def guarded(self, row: dict[str, Any], fn: Any, *args: Any) -> None:
        """Run `fn(row, *args)`, turning RowFiltered/RowFailed/exceptions into the row's status."""
        try:
            fn(row, *args)
        except RowFiltered as exc:
            mark(row, "filtered", self.stage, exc.rule)
        except RowFailed as exc:
            mark(row, "quarantined", self.stage, exc.reason, exc.raw)
        except UserError:  # a template, model or key that no row can fix: the run stops (see process)
            raise
        except Exception as exc:  # a bad row must not take its batch down with it
            mark(row, "quarantined", self.stage, f"{type(exc).__name__}: {exc}")

    def process_applying_mappings(self, *args: list[dict[str, Any]]) -> "StepOutput":
        """distilabel's, without its copy of every row when the step has no input or output mappings
        (the engine sets none): `process` already works on copies."""
        if self.input_mappings or self.output_mappings:
            yield from super().process_applying_mappings(*args)
            return
        yield from self.process(*args)

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        rows = [dict(r) for r in inputs]
        produced = self.columns(self.params, self.template_dir)[1]
        for row in rows:
            for col in (*produced, STAGE, REASON, RAW, USAGE):
                row.setdefault(col, None)
        # rows whose status is None come from a stage that crashed (distilabel imputed None): the
        # engine quarantines them; like filtered rows they pass through untouched
        ok = [r for r in rows if is_ok(r)] if stopped() is None else []  # a stopping run does no LLM work
        if ok:
            passing_through = [r for r in rows if not is_ok(r)]
            try:
                replaced = self.process_rows(ok)
            except UserError as exc:
                stop_run(str(exc), exc.exit_code)
                for row in ok:
                    mark(row, "quarantined", self.stage, f"run stopped: {exc}")
                replaced = None
            except Exception as exc:  # a bug or an outage for the whole batch: its rows, not the run
                # (left to distilabel, the batch would come back as Nones, wiping the status of the
                # rows that only passed through)
                reason = f"stage failed on its batch: {type(exc).__name__}: {exc}"
                for row in ok:
                    mark(row, "quarantined", self.stage, reason)
                replaced = None
            if replaced is not None:  # an expanding step: its children (and failed parents) replace `ok`
                rows = passing_through + replaced
            self._watch_quarantine(len(ok), rows)
        report_batch(self.stage, len(inputs), len(rows))
        yield rows

    def _watch_quarantine(self, processed: int, rows: list[dict[str, Any]]) -> None:
        if self._watch is None:
            self._watch = QuarantineWatch(self.stage, self.max_quarantine_share, self.quarantine_min_rows)
        self._watch.add(processed, _quarantined_here(rows, self.stage)[:processed])


def answer_text(completion: "Completion", what: str = "generation") -> str:
    """The model's text (after any prefill) for a step that needs text: a failed request or an empty
    answer raises RowFailed (`<what> failed: ...`), so the row is quarantined with the reason and the
    server's raw body."""
    if completion.error is not None:
        raise RowFailed(f"{what} failed: {completion.error}", completion.raw)
    if completion.empty:
        raw = completion.raw if completion.raw is not None else completion.text
        raise RowFailed(f"{what} failed: {EMPTY_COMPLETION}", raw)
    return completion.text


def _quarantined_here(rows: list[dict[str, Any]], stage: str) -> list[str]:
    return [str(r.get(REASON)) for r in rows if r.get(STATUS) == "quarantined" and r.get(STAGE) == stage]
