"""PT-ALIGN exporters: finished rows -> SafetyTriple / PreferencePair / KTORow records, plain or conversational.

Every view is derived from the one validated triple, so the configs always agree. Training
prompts are the plain instruction: constraints and demonstrations never reach the published rows.
"""

from __future__ import annotations

import json
from typing import Any

from factory.export.base import ExportContext, Record
from schemas.records import (
    PRINCIPLE_SAFE_OVER_HARMFUL,
    ConversationalKTORow,
    ConversationalPair,
    KTORow,
    PreferencePair,
    SafetyTriple,
    assistant_turn,
    conversational_pair,
    user_turn,
)


def safety_triple(row: dict[str, Any], ctx: ExportContext) -> SafetyTriple:
    data = json.loads(row["triple"])
    return SafetyTriple.model_validate({**data, "provenance": ctx.provenance(data["id"])})


def ptalign_triples(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [safety_triple(row, ctx)]


def _pair(t: SafetyTriple) -> PreferencePair:
    """chosen = positive (rank 1), rejected = toxic (rank 2): the C²-Syn `PreferencePair` schema."""
    return PreferencePair(
        prompt=t.instruction,
        chosen=t.positive,
        rejected=t.toxic,
        chosen_rank=1,
        rejected_rank=2,
        principle=PRINCIPLE_SAFE_OVER_HARMFUL,
        source_id=t.id,
        group_id=f"ptalign-{t.id}",
    )


def _kto(t: SafetyTriple) -> list[KTORow]:
    """Two unpaired rows per triple: the positive response desirable, the toxic one undesirable."""
    return [
        KTORow(prompt=t.instruction, completion=t.positive, label=True, source_id=t.id),
        KTORow(prompt=t.instruction, completion=t.toxic, label=False, source_id=t.id),
    ]


def ptalign_pairs(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [_pair(safety_triple(row, ctx))]


def ptalign_pairs_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    """`ptalign.pairs` in TRL's conversational form (the instruction a user turn, answers assistant turns)."""
    return [
        ConversationalPair.model_validate(conversational_pair(_pair(safety_triple(row, ctx)).model_dump()))
    ]


def ptalign_kto(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return list(_kto(safety_triple(row, ctx)))


def ptalign_kto_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    """`ptalign.kto` in TRL's conversational KTO form: prompt and completion as message lists."""
    return [
        ConversationalKTORow.model_validate(
            {
                "prompt": user_turn(k.prompt),
                "completion": assistant_turn(k.completion),
                "label": k.label,
                "source_id": k.source_id,
            }
        )
        for k in _kto(safety_triple(row, ctx))
    ]
