"""C²-Syn exporters: a ranked row -> its group, its 15 pairs, or the pairs as conversations."""

from __future__ import annotations

from typing import Any

from factory.export.base import ExportContext, Record
from schemas.records import C2Group, assistant_turn, user_turn


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
