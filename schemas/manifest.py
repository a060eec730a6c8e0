"""The dataset manifest: what a run produced, from what, and where every input row went."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class RowCounts(BaseModel):
    """Every row ends in exactly one place: output, filtered (by rule) or quarantined (by stage).

    input + created - expanded = output + filtered + quarantined.
    """

    model_config = ConfigDict(extra="forbid")

    input: int = Field(ge=0)
    created: int = Field(0, ge=0, description="rows created by expanding steps (e.g. topics -> instructions)")
    expanded: int = Field(0, ge=0, description="rows replaced by the rows they expanded into")
    output: int = Field(ge=0)
    filtered: dict[str, int] = Field(default_factory=dict, description="rule -> rows removed")
    quarantined: dict[str, int] = Field(default_factory=dict, description="stage -> rows quarantined")

    @model_validator(mode="after")
    def _adds_up(self) -> RowCounts:
        total = self.output + sum(self.filtered.values()) + sum(self.quarantined.values())
        if total != self.input + self.created - self.expanded:
            raise ValueError(
                f"row counts do not add up: input {self.input} + created {self.created} - expanded "
                f"{self.expanded} != output {self.output} + "
                f"filtered {sum(self.filtered.values())} + quarantined {sum(self.quarantined.values())}"
            )
        return self


class SplitInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[str]
    num_rows: int = Field(ge=0)


class ConfigInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_name: str = Field(alias="schema", description="record schema name (schemas.registry)")
    exporter: str
    default: bool = False
    splits: dict[str, SplitInfo]


class GeneratorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    backend: str
    kind: str
    model: str
    revision: str | None = None
    generation: dict[str, Any] = Field(default_factory=dict)


class StageStats(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: str
    rows_in: int = 0
    rows_ok: int = 0
    filtered: int = 0
    quarantined: int = 0
    llm_calls: int = 0
    cached_calls: int = Field(
        0, description="of `llm_calls`, answered from the request cache (not generated again)"
    )
    prompt_tokens: int = 0
    completion_tokens: int = 0
    events: dict[str, int] = Field(
        default_factory=dict,
        description="what the stage did besides filtering, e.g. cuts_redrawn, sr_regenerated",
    )
    generation_seconds: float | None = Field(
        None,
        description="wall time from the stage's first request sent to its last answer received, over all its"
        " batches and replicas; None when it generated nothing (every answer came from the request cache)",
    )

    def generated_tokens_per_s(self) -> float | None:
        """The stage's generation speed; None unless every call was generated in `generation_seconds`
        (answers from the request cache took no generation time, so their tokens would inflate it)."""
        if not self.generation_seconds or not self.completion_tokens or self.cached_calls:
            return None
        return self.completion_tokens / self.generation_seconds


class DatasetManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format_version: int = 1
    safepref_version: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    created_at: str
    seed: int
    license: str
    source: dict[str, Any] = Field(default_factory=dict)
    generators: list[GeneratorInfo] = Field(default_factory=list)
    configs: dict[str, ConfigInfo]
    counts: RowCounts
    stages: dict[str, StageStats] = Field(default_factory=dict)
    inputs_sha256: dict[str, str] = Field(
        default_factory=dict, description="source file and prompt templates the run read, by sha256"
    )
    contains_harmful_text: bool = True
    wall_time_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @model_validator(mode="after")
    def _one_default(self) -> DatasetManifest:
        defaults = [n for n, c in self.configs.items() if c.default]
        if self.configs and len(defaults) != 1:
            raise ValueError(f"exactly one config must be the default, got {defaults or 'none'}")
        return self
