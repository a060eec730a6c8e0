"""Exporters turn a finished row into the records of one output config (validated by its schema)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from factory.ptalign_exporters import PTALIGN_EXPORTER_FUNCTIONS
from schemas.generation import GenerationParams
from schemas.generic_params import GENERIC_EXPORTERS
from schemas.provenance import Provenance, StageDecoding
from schemas.records import C2Group, assistant_turn, user_turn


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
    # the output's validated exporter params (schemas.step_params.EXPORTER_PARAMS), set per config by the writer
    params: Any = None

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
_last_group: tuple[dict[str, Any], C2Group] | None = None


def _c2_group(row: dict[str, Any], ctx: ExportContext) -> C2Group:
    """The row's validated group; parsed once per row although several configs export it."""
    from factory.steps.c2syn import build_group

    global _last_group
    if _last_group is not None and _last_group[0] is row:
        return _last_group[1]
    data = build_group(row, ctx.seed)
    group = C2Group.model_validate({**data, "provenance": ctx.provenance(data["source_id"])})
    _last_group = (row, group)
    return group


def c2syn_groups(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [_c2_group(row, ctx)]


def c2syn_pairs(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return list(_c2_group(row, ctx).pair_records())


def conversational_pair(pair: dict[str, Any]) -> dict[str, Any]:
    """A plain-text pair in TRL's conversational form: the prompt a user turn, each response an assistant turn."""
    return {
        **pair,
        "prompt": user_turn(pair["prompt"]),
        "chosen": assistant_turn(pair["chosen"]),
        "rejected": assistant_turn(pair["rejected"]),
    }


def c2syn_pairs_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [conversational_pair(p) for p in _c2_group(row, ctx).pair_records()]


def _imported(target: str) -> Exporter:
    module, _, name = target.partition(":")
    found: Exporter = getattr(importlib.import_module(module), name)
    return found


EXPORTER_FUNCTIONS: dict[str, Exporter] = {
    "c2syn.groups": c2syn_groups,
    "c2syn.pairs": c2syn_pairs,
    "c2syn.pairs_conversational": c2syn_pairs_conversational,
    **PTALIGN_EXPORTER_FUNCTIONS,
    **{name: _imported(target) for name, (_, _, target) in GENERIC_EXPORTERS.items()},
}
