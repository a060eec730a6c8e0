"""How a method (or the generic step library) declares itself: once, in `schemas/methods/<method>.py`.

A declaration binds each name a recipe uses to its pure half (the params model or the record schema)
and its implementation, given as a `"module:attribute"` string so that `schemas` stays pure and an
implementation is imported only when a run needs it. Every registry (`schemas.registry`) is derived
from these declarations; nothing else lists steps or exporters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel

from schemas.step_params import ExporterParams, StepParams


@dataclass(frozen=True)
class StepDeclaration:
    params: type[StepParams]
    implementation: str  # "module:Class", a distilabel Step subclass


@dataclass(frozen=True)
class ExporterDeclaration:
    record: str  # a record schema name from schemas.records.RECORD_SCHEMAS
    implementation: str  # "module:function", row + ExportContext -> records
    params: type[ExporterParams] | None = (
        None  # the output's `params` (ExportContext.params); None: takes none
    )


@dataclass(frozen=True)
class Paper:
    title: str
    arxiv: str


@dataclass(frozen=True)
class MethodDeclaration:
    name: str  # the slice's name: `steps/<name>/`, `export/<name>.py`, `recipes/templates/<name>/`
    label: str  # how the card and docs name it
    paper: Paper | None  # None: generic parts that implement no paper
    steps: dict[str, StepDeclaration] = field(default_factory=dict)
    exporters: dict[str, ExporterDeclaration] = field(default_factory=dict)
    # schemas a whole source file may be validated against (`source.file_schema`)
    seed_files: dict[str, type[BaseModel]] = field(default_factory=dict)
