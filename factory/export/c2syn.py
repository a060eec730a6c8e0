"""C²-Syn exporters: a ranked row -> its group, its 15 pairs, or the pairs as conversations."""

from __future__ import annotations

from typing import Any

from factory.export.base import Columns, ExportContext, Picked, Record
from schemas.records import C2_PAIR_INDEXES, C2Group, assistant_turn, user_turn


def _c2_group(row: dict[str, Any], ctx: ExportContext) -> C2Group:
    """The row's validated group; parsed once per row although several configs export it."""
    from factory.steps.c2syn.steps import build_group

    def build() -> C2Group:
        data = build_group(row, ctx.seed)
        return C2Group.model_validate({**data, "provenance": ctx.provenance(data["source_id"])})

    group: C2Group = ctx.shared("c2syn.group", row, build)
    return group


def c2syn_groups(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return [_c2_group(row, ctx)]


_CHOSEN = [i for i, _ in C2_PAIR_INDEXES]
_REJECTED = [j for _, j in C2_PAIR_INDEXES]


def c2syn_pairs(row: dict[str, Any], ctx: ExportContext) -> Columns:
    group = _c2_group(row, ctx)
    texts = [r.text for r in group.responses]
    return Columns(
        {**group.pair_columns(), "chosen": Picked(texts, _CHOSEN), "rejected": Picked(texts, _REJECTED)}
    )


def c2syn_pairs_conversational(row: dict[str, Any], ctx: ExportContext) -> Columns:
    """`schemas.records.conversational_pair` of each pair, column by column: one assistant turn per
    response."""
    group = _c2_group(row, ctx)
    columns = group.pair_columns()
    turns = [assistant_turn(r.text) for r in group.responses]
    return Columns(
        {
            **columns,
            "prompt": [user_turn(group.prompt)] * len(columns["prompt"]),
            "chosen": Picked(turns, _CHOSEN),
            "rejected": Picked(turns, _REJECTED),
        }
    )
