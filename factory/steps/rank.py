"""`rank`: order a list column by a score column (or the weighted sum of several), best first.

Scores are lists parallel to the ranked column (what `llm.judge` with `each` writes). The sort is
stable, so ties keep the list's order; identical items (ignoring surrounding space) keep only their
best-ranked copy, counted as the stage event `duplicates_dropped`. A row left with fewer than
`min_items` items is filtered (rule `fewer_than_<min_items>_items`): it cannot make a preference.

The scores written beside the ranking are always "higher is better", the convention the exporters
and a margin expression (`ranked_scores[0] - ranked_scores[-1]`) read: with `descending: false`
(a low score is best) they are the weighted sums negated.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import PrivateAttr

from factory.core.rows import response_key
from factory.steps.base import RowFailed, RowFiltered, SafeprefStep, count_event
from schemas.generic_params import RankParams


def weighted_scores(row: dict[str, Any], weights: dict[str, float], n: int) -> list[float]:
    """Per item, the weighted sum of its scores; RowFailed when a score list does not fit the items."""
    totals = [0.0] * n
    for column, weight in weights.items():
        scores = row.get(column)
        if not isinstance(scores, list) or len(scores) != n:
            shown = f"{len(scores)} scores" if isinstance(scores, list) else type(scores).__name__
            raise RowFailed(f"score column {column!r} holds {shown} for {n} items")
        for i, value in enumerate(scores):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise RowFailed(f"score column {column!r} item {i} is {value!r}, not a number")
            totals[i] += weight * float(value)
    return totals


def ranking(
    items: list[Any], scores: list[float], *, descending: bool, dedupe: bool
) -> tuple[list[int], int]:
    """Item indices best first (a stable sort) and how many duplicates were dropped."""
    order = sorted(range(len(items)), key=lambda i: -scores[i] if descending else scores[i])
    if not dedupe:
        return order, 0
    seen: set[str] = set()
    kept = []
    for i in order:
        key = response_key(items[i])
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return kept, len(order) - len(kept)


class Rank(SafeprefStep):
    """`rank`: writes `into` (the items best first) and `scores_into` (their scores)."""

    _spec: RankParams | None = PrivateAttr(default=None)

    @classmethod
    def columns(
        cls, params: dict[str, Any], template_dir: str | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        spec = RankParams.model_validate(params)
        return (spec.column, *spec.score_columns()), (spec.into, spec.scores_into)

    @property
    def spec(self) -> RankParams:
        if self._spec is None:
            self._spec = RankParams.model_validate(self.params)
        return self._spec

    def process_row(self, row: dict[str, Any]) -> None:
        spec = self.spec
        items = row.get(spec.column)
        if not isinstance(items, list):
            raise RowFailed(f"column {spec.column!r} holds {type(items).__name__}, not a list to rank")
        scores = weighted_scores(row, spec.score_columns(), len(items))
        order, dropped = ranking(items, scores, descending=spec.descending, dedupe=spec.dedupe)
        if dropped:
            count_event(row, self.stage, "duplicates_dropped", dropped)
        if len(order) < spec.min_items:
            raise RowFiltered(f"fewer_than_{spec.min_items}_items")
        row[spec.into] = [items[i] for i in order]
        # higher is better whatever the direction (0.0 - x: no -0.0 for a zero score)
        row[spec.scores_into] = [scores[i] if spec.descending else 0.0 - scores[i] for i in order]
