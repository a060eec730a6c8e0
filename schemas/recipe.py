"""The recipe model: what a recipe YAML may declare. Pure validation, no I/O."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails, InitErrorDetails

from schemas.generation import BackendSpec, merged_decoding
from schemas.registry import EXPORTER_PARAMS, EXPORTERS, SEED_FILE_SCHEMAS, STEP_PARAMS

_NAME = r"^[a-z0-9][a-z0-9_\-]*$"
NONCOMMERCIAL_SOURCE = "PKU-Alignment/PKU-SafeRLHF"  # CC-BY-NC-4.0: what is derived inherits it
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class SourceSpec(BaseModel):
    """Where the input rows come from. `field_map` renames source columns to the names the steps read."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file", "bundled", "hub", "none"]
    path: str | None = Field(
        None, description="file path (kind=file) or name under recipes/data (kind=bundled)"
    )
    dataset: str | None = Field(None, description="Hub dataset id (kind=hub)")
    name: str | None = Field(None, description="Hub dataset config / data_dir (kind=hub)")
    split: str = "train"
    revision: str | None = Field(None, description="Hub revision; pin it for reproducible runs")
    field_map: dict[str, str] = Field(default_factory=dict, description="step column -> source column")
    id_field: str | None = Field(
        None, description="source column holding a stable row id (default: row index)"
    )
    limit: int | None = Field(None, ge=1)
    dedup_on: str | None = Field(
        None,
        description="column whose exact duplicates are filtered before any stage (rule duplicate_<column>); "
        "with c2syn.select use its own `dedup_on`, which dedups among the rows that pass",
    )
    records_key: str | None = Field(
        None,
        description="YAML/JSON mapping file: the key whose list becomes the rows; every other top-level "
        "key, and `source_sha256` (the file's sha256), is copied onto each row",
    )
    file_schema: str | None = Field(
        None, description="schema the whole file must satisfy first (e.g. ptalign_seed)"
    )

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.kind in ("file", "bundled") and not self.path:
            raise ValueError(f"a `{self.kind}` source needs `path`")
        if self.kind == "hub" and not self.dataset:
            raise ValueError("a `hub` source needs `dataset` (a Hub dataset id)")
        if self.file_schema is not None and self.file_schema not in SEED_FILE_SCHEMAS:
            raise ValueError(
                f"unknown file_schema {self.file_schema!r}; known: {', '.join(SEED_FILE_SCHEMAS)}"
            )
        if (self.records_key or self.file_schema) and self.kind not in ("file", "bundled"):
            raise ValueError("records_key and file_schema apply to `file` and `bundled` sources")
        return self


class StageSpec(BaseModel):
    """One stage: a registered step (or `module:Class` when the user allows imports) and its parameters."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    step: str
    backend: str | None = Field(None, description="key in `backends` for steps that call an LLM")
    params: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(50, ge=1, le=100_000)

    @model_validator(mode="after")
    def _check(self) -> StageSpec:
        params_model = STEP_PARAMS.get(self.step)
        if params_model is None:
            if not _IMPORT_PATH.match(self.step):
                known = ", ".join(sorted(STEP_PARAMS))
                raise ValueError(f"unknown step {self.step!r}; built-in steps: {known}")
            return self
        try:
            params = params_model.model_validate(self.params)
        except ValidationError as exc:
            raise _under_params(exc) from None
        self.params = params.model_dump(mode="json")
        if params.requires_backend() and not self.backend:
            raise ValueError(f"step {self.step!r} calls an LLM with these params: set `backend`")
        return self


def _under_params(exc: ValidationError) -> ValidationError:
    """A params model's errors, each re-located under `params` with its own type (hence message), so a
    step's or exporter's param is reported exactly like any other field."""
    return ValidationError.from_exception_data(exc.title, [_placed("params", e) for e in exc.errors()])


def _placed(field: str, error: ErrorDetails) -> InitErrorDetails:
    placed = InitErrorDetails(type=error["type"], loc=(field, *error["loc"]), input=error["input"])
    if "ctx" in error:
        placed["ctx"] = error["ctx"]
    return placed


class OutputSpec(BaseModel):
    """One published config, built by a registered exporter from the final rows."""

    model_config = ConfigDict(extra="forbid")

    config: str = Field(pattern=_NAME)
    exporter: str
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="the exporter's parameters (generic exporters: which columns, how to pair)",
    )
    split: str = "train"
    default: bool = False
    rows_per_shard: int = Field(100_000, ge=1)

    @field_validator("exporter")
    @classmethod
    def _known_exporter(cls, value: str) -> str:
        if value not in EXPORTERS:
            raise ValueError(f"unknown exporter {value!r}; known: {', '.join(sorted(EXPORTERS))}")
        return value

    @model_validator(mode="after")
    def _check_params(self) -> OutputSpec:
        params_model = EXPORTER_PARAMS.get(self.exporter)
        if params_model is None:
            if self.params:
                message = f"exporter {self.exporter!r} takes no params"
                raise ValidationError.from_exception_data(
                    "OutputSpec",
                    [
                        InitErrorDetails(
                            type="value_error", loc=("params",), input=self.params, ctx={"error": message}
                        )
                    ],
                )
            return self
        try:
            self.params = params_model.model_validate(self.params).model_dump(mode="json")
        except ValidationError as exc:
            raise _under_params(exc) from None
        return self


class CardSpec(BaseModel):
    """Dataset-card metadata that the run cannot derive."""

    model_config = ConfigDict(extra="forbid")

    pretty_name: str
    language: list[str] = Field(default_factory=lambda: ["en"])
    task_categories: list[str] = Field(default_factory=lambda: ["text-generation"])
    tags: list[str] = Field(default_factory=list)
    source_datasets: list[str] = Field(default_factory=list)
    description: str = ""
    deviations: list[str] = Field(
        default_factory=list, description="how this recipe departs from the method's reference (one per line)"
    )
    citation: str | None = None


class Recipe(BaseModel):
    """A declarative dataset recipe."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_NAME)
    version: str = "0.1.0"
    description: str = ""
    license: str = Field(description="SPDX-style id as the Hub spells it, e.g. cc-by-nc-4.0")
    seed: int = 0
    max_quarantine_share: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="a stage that quarantines more than this share of its rows stops the run (exit 1), "
        "judged once quarantine_min_rows rows have passed through it",
    )
    quarantine_min_rows: int = Field(10, ge=1)
    source: SourceSpec
    backends: dict[str, BackendSpec] = Field(default_factory=dict)
    stages: list[StageSpec] = Field(min_length=1)
    outputs: list[OutputSpec] = Field(min_length=1)
    card: CardSpec

    @model_validator(mode="after")
    def _cross_refs(self) -> Recipe:
        names = [s.name for s in self.stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique: {', '.join(dupes)}")
        for stage in self.stages:
            if stage.backend is not None and stage.backend not in self.backends:
                raise ValueError(
                    f"stage {stage.name!r} uses backend {stage.backend!r}, which `backends` does not define"
                )
        self._check_decodings()
        select = next((s.name for s in self.stages if s.step == "c2syn.select"), None)
        if self.source.dedup_on is not None and select is not None:
            raise ValueError(
                f"source.dedup_on runs before the C²-Syn filter, so a failing first row would hide a later"
                f" valid one: use stages.{select}.params.dedup_on (dedup among the rows that pass)"
            )
        sources = {self.source.dataset or "", *self.card.source_datasets}
        if any(NONCOMMERCIAL_SOURCE in s for s in sources) and not self.license.startswith("cc-by-nc"):
            raise ValueError(
                f"license: data derived from {NONCOMMERCIAL_SOURCE} (CC-BY-NC-4.0) must keep a non-commercial"
                f" licence such as cc-by-nc-4.0, not {self.license!r}"
            )
        configs = [o.config for o in self.outputs]
        if len(set(configs)) != len(configs):
            raise ValueError("output config names must be unique")
        defaults = [o.config for o in self.outputs if o.default]
        if len(defaults) > 1:
            raise ValueError(f"only one output may be `default: true`, got {defaults}")
        if not defaults:
            self.outputs[0].default = True
        return self

    def _check_decodings(self) -> None:
        """Each LLM stage's own params against the decoding it will get (its backend's with its
        overrides), e.g. n samples of greedy decoding: refused here, not in the run's first batch."""
        for index, stage in enumerate(self.stages):
            params_model = STEP_PARAMS.get(stage.step)
            if params_model is None or stage.backend is None:
                continue
            params = params_model.model_validate(stage.params)
            backend = self.backends[stage.backend].generation.model_dump()
            for role, override in params.decodings().items():
                problem = params.decoding_problem(role, merged_decoding(backend, override))
                if problem is not None:
                    field, message = problem
                    raise ValidationError.from_exception_data(
                        "Recipe",
                        [
                            InitErrorDetails(
                                type="value_error",
                                loc=("stages", index, "params", field),
                                input=stage.params.get(field),
                                ctx={"error": message},
                            )
                        ],
                    )
