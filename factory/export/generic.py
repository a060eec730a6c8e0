"""Generic exporters a recipe composes in YAML (declared in `schemas/methods/generic.py`): preference
pairs, SFT rows and KTO rows from the columns its params name (schemas/generic_params.py), plain and
in TRL's conversational format.

Every record is validated by its schema here, so a row that cannot make one is quarantined at
stage `export` with the reason. A row that makes none by the params' rules (no pair beats the
margin, no item reaches `min_score`) is filtered at stage `export` under a rule name instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from factory.core.rows import ROW_ID, RowFiltered, response_key
from factory.export.base import ExportContext, Record
from schemas.records import (
    ConversationalKTORow,
    ConversationalPair,
    ConversationalSFTRow,
    KTORow,
    PreferencePair,
    PromptResponse,
    SFTRow,
    assistant_turn,
    conversational_pair,
    prompt_turns,
)

if TYPE_CHECKING:
    from schemas.generic_params import KTOParams, PairsParams, SFTParams

NO_PAIR = "no_preference_pair"
NO_SFT_RESPONSE = "no_sft_response"
NO_KTO_ROW = "no_kto_row"


@dataclass(frozen=True)
class Ranked:
    text: str
    rank: int  # 1 = best; equal scores share a rank
    score: float | None


def ranked_items(row: dict[str, Any], p: PairsParams | KTOParams) -> list[Ranked]:
    """The responses best first: by score (stable, so ties keep the list's order), else as listed."""
    items = row[p.responses_column]
    if not isinstance(items, list):
        raise TypeError(
            f"column {p.responses_column!r} holds {type(items).__name__}, not a list of responses"
        )
    if p.scores_column is None:
        return [Ranked(str(t), i + 1, None) for i, t in enumerate(items)]
    scores = row[p.scores_column]
    if not isinstance(scores, list) or len(scores) != len(items):
        raise ValueError(
            f"column {p.scores_column!r} does not hold one score per item of {p.responses_column!r}"
        )
    order = best_first(scores)
    return [Ranked(str(items[i]), 1 + sum(s > scores[i] for s in scores), float(scores[i])) for i in order]


def best_first(scores: list[Any]) -> list[int]:
    """Indices by score, highest first; a stable sort, so ties keep the list's order."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def _prefers(a: Ranked, b: Ranked, min_margin: float) -> bool:
    """Whether `a` is a preference over `b`: different text, and ranked strictly better by at least the margin."""
    if response_key(a.text) == response_key(b.text) or a.rank >= b.rank:
        return False
    return a.score is None or b.score is None or a.score - b.score >= min_margin


def _prompt(row: dict[str, Any], column: str, system: str | None = None) -> list[dict[str, str]]:
    return prompt_turns(str(row[column]), system)


def _source_id(row: dict[str, Any]) -> str:
    return str(row[ROW_ID])


# -- preference pairs ------------------------------------------------------------------------------


def preference_pairs(row: dict[str, Any], p: PairsParams) -> list[PreferencePair]:
    ranked = ranked_items(row, p)
    candidates = (
        [(ranked[0], ranked[-1])] if p.pairing == "best_vs_worst" and ranked else combinations(ranked, 2)
    )
    pairs = [
        PreferencePair(
            prompt=str(row[p.prompt_column]),
            chosen=a.text,
            rejected=b.text,
            chosen_rank=a.rank,
            rejected_rank=b.rank,
            principle=p.principle,
            source_id=_source_id(row),
            group_id=f"g-{_source_id(row)}",
        )
        for a, b in candidates
        if _prefers(a, b, p.min_margin)
    ]
    if not pairs:
        raise RowFiltered(NO_PAIR)
    return pairs


def pairs(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    return list(preference_pairs(row, ctx.params))


def pairs_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    return [
        ConversationalPair.model_validate(conversational_pair(pair.model_dump(), p.system_prompt))
        for pair in preference_pairs(row, p)
    ]


# -- SFT -------------------------------------------------------------------------------------------


def sft_responses(row: dict[str, Any], p: SFTParams) -> list[str]:
    """The responses to learn: a text column's text, or the best / every item of a list column (best
    first: by score when scored, as `ranked_items` orders them, else as listed), keeping only those
    scoring at least `min_score`."""
    value = row[p.response_column]
    items = value if isinstance(value, list) else [value]
    scores: list[Any] = [None] * len(items)
    if p.scores_column is not None:
        found = row[p.scores_column]
        scores = found if isinstance(found, list) else [found]
        if len(scores) != len(items):
            raise ValueError(f"column {p.scores_column!r} does not hold one score per response")
        order = best_first(scores)
        items, scores = [items[i] for i in order], [scores[i] for i in order]
    keep = [str(t) for t, s in zip(items, scores, strict=True) if p.min_score is None or s >= p.min_score]
    keep = keep if p.take == "all" else keep[:1]
    if not keep:
        raise RowFiltered(NO_SFT_RESPONSE)
    return keep


def sft(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    return [
        SFTRow(prompt=str(row[p.prompt_column]), completion=text, source_id=_source_id(row))
        for text in sft_responses(row, p)
    ]


def sft_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    return [
        ConversationalSFTRow.model_validate(
            {
                "messages": [*_prompt(row, p.prompt_column, p.system_prompt), *assistant_turn(text)],
                "source_id": _source_id(row),
            }
        )
        for text in sft_responses(row, p)
    ]


# -- KTO -------------------------------------------------------------------------------------------


def kto_labels(row: dict[str, Any], p: KTOParams) -> list[tuple[str, bool]]:
    """(response, desirable) per exported item."""
    ranked = ranked_items(row, p)
    if p.labels == "best_and_worst":
        if len(ranked) < 2 or not _prefers(ranked[0], ranked[-1], p.min_margin):
            raise RowFiltered(NO_KTO_ROW)
        return [(ranked[0].text, True), (ranked[-1].text, False)]
    assert p.desirable_min is not None and p.undesirable_max is not None
    labelled = [
        (r.text, r.score >= p.desirable_min)
        for r in ranked
        if r.score is not None and (r.score >= p.desirable_min or r.score <= p.undesirable_max)
    ]
    if not labelled:
        raise RowFiltered(NO_KTO_ROW)
    return labelled


def kto(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    prompt = str(row[p.prompt_column])
    return [
        KTORow(prompt=prompt, completion=text, label=label, source_id=_source_id(row))
        for text, label in kto_labels(row, p)
    ]


def kto_conversational(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    return [
        ConversationalKTORow.model_validate(
            {
                "prompt": _prompt(row, p.prompt_column, p.system_prompt),
                "completion": assistant_turn(text),
                "label": label,
                "source_id": _source_id(row),
            }
        )
        for text, label in kto_labels(row, p)
    ]


# -- prompt + response (the `generate.respond` step's output) -------------------------------------


def generate_responses(row: dict[str, Any], ctx: ExportContext) -> list[Record]:
    p = ctx.params
    return [
        PromptResponse(
            prompt=row[p.prompt_column],
            response=row[p.response_column],
            source_id=_source_id(row),
            provenance=ctx.provenance(_source_id(row)),
        )
    ]
