"""The step base class every built-in step derives from.

A step only processes rows whose `_sp_status` is `ok` and passes every other row through untouched,
so each input row reaches the writer exactly once. A row that fails raises inside `process_row(s)`;
the base class quarantines that row with the error (and the raw LLM text when there is one) instead
of letting distilabel replace the whole batch by `None`s.
"""

import json
from typing import TYPE_CHECKING, Any, ClassVar

from factory.distilabel_compat import Step, StepInput
from pydantic import Field, PrivateAttr

if TYPE_CHECKING:
    from distilabel.typing import StepColumns, StepOutput

    from factory.backends import Backend

STATUS = "_sp_status"
STAGE = "_sp_stage"
REASON = "_sp_reason"
RAW = "_sp_raw"
USAGE = "_sp_usage"
ROW_ID = "_sp_id"
BOOKKEEPING = (ROW_ID, STATUS, STAGE, REASON, RAW, USAGE)


class RowFiltered(Exception):
    """Raised by a step for a row that a rule removes (not an error)."""

    def __init__(self, rule: str) -> None:
        super().__init__(rule)
        self.rule = rule


class RowFailed(Exception):
    """Raised by a step for a row whose processing failed; `raw` keeps the LLM text that caused it."""

    def __init__(self, reason: str, raw: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


def is_ok(row: dict[str, Any]) -> bool:
    return row.get(STATUS) == "ok"


def add_usage(row: dict[str, Any], stage: str, calls: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Accumulate LLM usage on the row (a JSON string: stage -> [calls, prompt, completion])."""
    usage = json.loads(row.get(USAGE) or "{}")
    c, p, k = usage.get(stage, [0, 0, 0])
    usage[stage] = [c + calls, p + prompt_tokens, k + completion_tokens]
    row[USAGE] = json.dumps(usage, sort_keys=True)


class SafeprefStep(Step):
    """Base of all built-in steps. Subclasses set `required`/`produced` and implement `process_row(s)`."""

    stage: str = Field(description="the recipe's stage name")
    params: dict[str, Any] = Field(default_factory=dict)
    backend_spec: dict[str, Any] | None = None
    seed: int = 0

    required: ClassVar[tuple[str, ...]] = ()
    produced: ClassVar[tuple[str, ...]] = ()

    _backend: "Backend | None" = PrivateAttr(default=None)

    @property
    def inputs(self) -> "StepColumns":
        return [*self.required, ROW_ID, STATUS]

    @property
    def outputs(self) -> "StepColumns":
        return [*self.produced, STATUS, STAGE, REASON, RAW, USAGE]

    # -- LLM access -------------------------------------------------------------------------------
    def load(self) -> None:
        super().load()
        if self.backend_spec is not None:
            from factory.backends import create_backend
            from schemas.generation import BackendSpec

            self._backend = create_backend(BackendSpec.model_validate(self.backend_spec))

    def unload(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        super().unload()

    @property
    def backend(self) -> "Backend":
        if self._backend is None:
            raise RuntimeError(f"stage {self.stage!r} has no backend loaded")
        return self._backend

    # -- row processing ---------------------------------------------------------------------------
    def process_rows(self, rows: list[dict[str, Any]]) -> None:
        """Process the `ok` rows of a batch in place. Default: one row at a time."""
        for row in rows:
            self.guarded(row, self.process_row)

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
        except Exception as exc:  # a bad row must not take its batch down with it
            mark(row, "quarantined", self.stage, f"{type(exc).__name__}: {exc}")

    def process(self, inputs: StepInput) -> "StepOutput":  # type: ignore[override]
        rows = [dict(r) for r in inputs]
        for row in rows:
            for col in self.produced:
                row.setdefault(col, None)
            for col in (STAGE, REASON, RAW, USAGE):
                row.setdefault(col, None)
            if row.get(STATUS) is None:
                # an earlier stage crashed and distilabel imputed None: leave it for the engine
                continue
        ok = [r for r in rows if is_ok(r)]
        if ok:
            self.process_rows(ok)
        yield rows


def mark(row: dict[str, Any], status: str, stage: str, reason: str, raw: str | None = None) -> None:
    row[STATUS] = status
    row[STAGE] = stage
    row[REASON] = reason
    row[RAW] = raw
