"""What every exporter gets and returns, and how a declared exporter is found.

An exporter turns a finished row into the records of one output config (validated by its schema); it
is declared by its method (`schemas/methods/`) as `"module:function"` and imported when a run uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
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


Record = BaseModel | dict[str, Any]
Exporter = Callable[[dict[str, Any], ExportContext], list[Record]]


def exporter_function(name: str) -> Exporter:
    """The function a method declared for the exporter `name` (a name the recipe model has validated)."""
    from schemas.registry import EXPORTER_IMPLEMENTATIONS

    module_name, _, attribute = EXPORTER_IMPLEMENTATIONS[name].partition(":")
    found: Exporter = getattr(importlib.import_module(module_name), attribute)
    return found
