"""PT-ALIGN exporters: finished rows -> SafetyTriple / PreferencePair / KTORow records.

Every view is derived from the one validated triple, so the three configs always agree. Training
prompts are the plain instruction: constraints and demonstrations never reach the published rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from schemas.records import PRINCIPLE_SAFE_OVER_HARMFUL, KTORow, PreferencePair, SafetyTriple

if TYPE_CHECKING:
    from factory.exporters import ExportContext, Record


def safety_triple(row: dict[str, Any], ctx: ExportContext) -> SafetyTriple:
    data = json.loads(row["triple"])
    return SafetyTriple.model_validate({**data, "provenance": ctx.provenance(data["id"])})


def ptalign_triples(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [safety_triple(row, ctx)]


def ptalign_pairs(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    """chosen = positive (rank 1), rejected = toxic (rank 2): the C²-Syn `PreferencePair` schema."""
    t = safety_triple(row, ctx)
    return [
        PreferencePair(
            prompt=t.instruction,
            chosen=t.positive,
            rejected=t.toxic,
            chosen_rank=1,
            rejected_rank=2,
            principle=PRINCIPLE_SAFE_OVER_HARMFUL,
            source_id=t.id,
            group_id=f"ptalign-{t.id}",
        )
    ]


def ptalign_kto(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    """Two unpaired rows per triple: the positive response desirable, the toxic one undesirable."""
    t = safety_triple(row, ctx)
    return [
        KTORow(prompt=t.instruction, completion=t.positive, label=True, source_id=t.id),
        KTORow(prompt=t.instruction, completion=t.toxic, label=False, source_id=t.id),
    ]


PTALIGN_EXPORTER_FUNCTIONS: dict[str, Callable[[dict[str, Any], ExportContext], list[Record]]] = {
    "ptalign.triples": ptalign_triples,
    "ptalign.pairs": ptalign_pairs,
    "ptalign.kto": ptalign_kto,
}
