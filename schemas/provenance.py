"""Per-row provenance: enough to say which recipe, model, decoding and seed produced a row."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.generation import GenerationParams


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe_name: str
    recipe_hash: str = Field(min_length=8, description="sha256 (hex) of the resolved recipe")
    generator_model: str
    generator_revision: str | None = None
    decoding: GenerationParams = Field(default_factory=GenerationParams)
    seed: int
    source_id: str
