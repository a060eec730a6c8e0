"""What every exporter gets and returns, and how a declared exporter is found.

An exporter turns a finished row into the records of one output config (validated by its schema); it
is declared by its method (`schemas/methods/`) as `"module:function"` and imported when a run uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pydantic import BaseModel

from schemas.generation import GenerationParams
from schemas.provenance import Provenance, StageDecoding


@dataclass(frozen=True)
class ExportContext:
    """Run-level facts every record's provenance carries."""

    recipe_name: str
    recipe_hash: str
    seed: int
    generator_model: str = "none"
    generator_revision: str | None = None
    decoding: GenerationParams = field(default_factory=GenerationParams)
    stages: tuple[StageDecoding, ...] = ()
    # the output's validated exporter params (schemas.registry.EXPORTER_PARAMS), set per config by the writer
    params: Any = None
    # what one row's exporters share (several configs export the same parsed group): the last row only
    _shared: dict[str, tuple[dict[str, Any], Any]] = field(default_factory=dict, compare=False, repr=False)

    def shared(self, key: str, row: dict[str, Any], build: Callable[[], Any]) -> Any:
        """`build()` once per row for every exporter of the run that asks for `key`."""
        last = self._shared.get(key)
        if last is not None and last[0] is row:
            return last[1]
        value = build()
        self._shared[key] = (row, value)
        return value

    def provenance(self, source_id: str) -> Provenance:
        if type(source_id) is str:  # the one field that differs per record, and valid: copy the run's
            return self._run_provenance.model_copy(update={"source_id": source_id})
        return self._validated(source_id)  # raises the ValidationError a bad id deserves

    @cached_property
    def _run_provenance(self) -> Provenance:
        return self._validated("")

    def _validated(self, source_id: Any) -> Provenance:
        return Provenance(
            recipe_name=self.recipe_name,
            recipe_hash=self.recipe_hash,
            generator_model=self.generator_model,
            generator_revision=self.generator_revision,
            decoding=self.decoding,
            seed=self.seed,
            source_id=source_id,
            stages=list(self.stages),
        )


@dataclass(frozen=True)
class Picked:
    """A column whose values are `values[i]` for each i of `indices`. The 15 pairs of a C²-Syn group
    repeat its six texts: the writer converts the six to Arrow and lets Arrow copy them into place
    (off the exporting thread), instead of converting thirty Python strings."""

    values: list[Any]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class Columns:
    """Records given column by column (field name -> values, every column as long): at hundreds of
    thousands of records, a dict per record cost more than the rest of the export."""

    data: dict[str, list[Any] | Picked]

    def __len__(self) -> int:
        return len(next(iter(self.data.values()), []))


Record = BaseModel | dict[str, Any]
Exporter = Callable[[dict[str, Any], ExportContext], "list[Record] | Columns"]


def exporter_function(name: str) -> Exporter:
    """The function a method declared for the exporter `name` (a name the recipe model has validated)."""
    from schemas.registry import EXPORTER_IMPLEMENTATIONS

    module_name, _, attribute = EXPORTER_IMPLEMENTATIONS[name].partition(":")
    found: Exporter = getattr(importlib.import_module(module_name), attribute)
    return found
