"""Exporters turn a finished row into the records of one output config (validated by its schema)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from factory.ptalign_exporters import PTALIGN_EXPORTER_FUNCTIONS
from schemas.generation import GenerationParams
from schemas.provenance import Provenance
from schemas.records import C2Group, ChatMessage, ConversationalPair


@dataclass(frozen=True)
class ExportContext:
    """Run-level facts every record's provenance carries."""

    recipe_name: str
    recipe_hash: str
    seed: int
    generator_model: str = "none"
    generator_revision: str | None = None
    decoding: GenerationParams = field(default_factory=GenerationParams)

    def provenance(self, source_id: str) -> Provenance:
        return Provenance(
            recipe_name=self.recipe_name,
            recipe_hash=self.recipe_hash,
            generator_model=self.generator_model,
            generator_revision=self.generator_revision,
            decoding=self.decoding,
            seed=self.seed,
            source_id=source_id,
        )


Exporter = Callable[[dict[str, Any], ExportContext], list[BaseModel]]


def _c2_group(row: dict[str, Any], ctx: ExportContext) -> C2Group:
    data = json.loads(row["group"])
    return C2Group.model_validate({**data, "provenance": ctx.provenance(data["source_id"])})


def c2syn_groups(row: dict[str, Any], ctx: ExportContext) -> list[BaseModel]:
    return [_c2_group(row, ctx)]


def c2syn_pairs(row: dict[str, Any], ctx: ExportContext) -> list[BaseModel]:
    return list(_c2_group(row, ctx).pairs())


def c2syn_pairs_conversational(row: dict[str, Any], ctx: ExportContext) -> list[BaseModel]:
    out: list[BaseModel] = []
    for p in _c2_group(row, ctx).pairs():
        out.append(
            ConversationalPair(
                prompt=[ChatMessage(role="user", content=p.prompt)],
                chosen=[ChatMessage(role="assistant", content=p.chosen)],
                rejected=[ChatMessage(role="assistant", content=p.rejected)],
                chosen_rank=p.chosen_rank,
                rejected_rank=p.rejected_rank,
                principle=p.principle,
                source_id=p.source_id,
                group_id=p.group_id,
            )
        )
    return out


EXPORTER_FUNCTIONS: dict[str, Exporter] = {
    "c2syn.groups": c2syn_groups,
    "c2syn.pairs": c2syn_pairs,
    "c2syn.pairs_conversational": c2syn_pairs_conversational,
    **PTALIGN_EXPORTER_FUNCTIONS,
}
