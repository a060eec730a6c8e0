"""Base class of every step's parameters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from schemas.generation import GenerationParams


class StepParams(BaseModel):
    """Parameters of one built-in step; `needs_llm` says whether the stage must name a backend."""

    model_config = ConfigDict(extra="forbid")
    needs_llm: ClassVar[bool] = False
    # True: every column it writes must be new, neither the source's nor an earlier stage's (a recipe
    # names them: replacing one silently would lose it). The generic steps; a method's steps may
    # rewrite their own columns.
    writes_new_columns: ClassVar[bool] = False

    def requires_backend(self) -> bool:
        """Whether the stage must name a backend (a step may need one only in some modes)."""
        return self.needs_llm

    def llm_calls_per_row(self) -> float:
        """Upper bound of LLM calls per input row of this stage (for `safepref plan`)."""
        return 1.0 if self.needs_llm else 0.0

    def rows_out_per_row(self) -> float:
        """How many rows leave this stage per row that enters it (expanding steps return > 1)."""
        return 1.0

    def decodings(self) -> dict[str, dict[str, Any]]:
        """The decoding overrides this stage applies on top of its backend's, by role (`generation`,
        `judge_generation`, ...): every field holding a `DecodingOverride`. Recorded in provenance."""
        from schemas.generation import DecodingOverride

        return {
            name: value.model_dump(exclude_none=True)
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), DecodingOverride)
        }

    def template_variables(self) -> list[str]:
        """What the step gives its prompt template besides the row's columns: a column of one of these
        names would be hidden from the template, so the recipe refuses it."""
        return []

    def list_columns(self) -> dict[str, str]:
        """The columns this stage reads as lists, by the param that names each: the recipe refuses
        one that an earlier stage writes with one value per row, or that holds other values in the
        source."""
        return {}

    def value_columns(self) -> list[str]:
        """The columns this stage writes with one value per row (not a list)."""
        return []

    def decoding_problem(self, role: str, decoding: GenerationParams) -> tuple[str, str] | None:
        """(param, message) when this stage cannot work with the decoding it gets for `role` (its
        backend's with its overrides); the recipe refuses it at load. None: it can."""
        return None

    def max_rows_out(self) -> int | None:
        """A cap on the rows this stage lets through in all (None: no cap)."""
        return None

    def items_column(self) -> str | None:
        """The list column whose every item this stage calls the LLM for (`llm_calls_per_row` is then
        per item), or None: the calls are per row. For `safepref plan`."""
        return None

    def list_lengths(self, known: dict[str, int]) -> dict[str, int]:
        """Most items of the list columns this stage writes, given those of earlier stages (`known`).
        For `safepref plan`."""
        return {}

    def summary(self) -> str:
        """One line for the dataset card: what this stage does with these parameters."""
        return _first_line(type(self).__doc__)


class ExporterParams(BaseModel):
    """Parameters of one exporter (an output's `params`), validated when a recipe loads."""

    model_config = ConfigDict(extra="forbid")

    def columns_read(self) -> list[str]:
        """The row columns the exporter reads: the source or a stage must provide each (checked before
        any LLM work, not when the run exports)."""
        return []

    def list_columns(self) -> dict[str, str]:
        """The columns it reads as lists, by the param that names each (as `StepParams.list_columns`)."""
        return {}

    def summary(self) -> str:
        """One line for the dataset card: what records this exporter makes with these parameters."""
        return _first_line(type(self).__doc__)


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
