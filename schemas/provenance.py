"""Per-row provenance: enough to say which recipe, model, decoding and seed produced a row."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.generation import GenerationParams


class StageDecoding(BaseModel):
    """How one LLM stage decoded, for one role (`generation`, `judge_generation`, `judge`, ...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: str
    role: str
    model: str
    revision: str | None = None
    decoding: GenerationParams


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe_name: str
    recipe_hash: str = Field(min_length=8, description="sha256 (hex) of the resolved recipe")
    generator_model: str = Field(description="model of the first LLM stage (every stage: `stages`)")
    generator_revision: str | None = None
    decoding: GenerationParams = Field(
        default_factory=GenerationParams,
        description="decoding of the first LLM stage (every stage: `stages`)",
    )
    seed: int
    source_id: str
    stages: list[StageDecoding] = Field(
        default_factory=list, description="model and decoding of every LLM stage and role, in stage order"
    )
