"""`safepref plan`: what a recipe will cost before it runs (upper bounds: filters only lower them)."""

from __future__ import annotations

from dataclasses import dataclass

from factory.core.rows import is_ok
from factory.core.sources import read_source
from factory.engine.recipe import LoadedRecipe
from schemas.generation import merged_decoding
from schemas.registry import STEP_PARAMS


@dataclass(frozen=True)
class StagePlan:
    name: str
    step: str
    backend: str | None
    calls_per_row: float
    rows_in: int
    calls: int
    max_new_tokens: int


@dataclass(frozen=True)
class RecipePlan:
    source_rows: int
    source_label: str
    stages: list[StagePlan]

    @property
    def total_calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def total_new_tokens(self) -> int:
        return sum(s.max_new_tokens for s in self.stages)


def plan_recipe(loaded: LoadedRecipe) -> RecipePlan:
    recipe = loaded.recipe
    rows, label = read_source(recipe.source, loaded.base_dir)
    n = float(sum(1 for r in rows if is_ok(r)))
    stages = []
    list_lengths: dict[str, int] = {}  # most items of the list columns written so far
    for stage in recipe.stages:
        model = STEP_PARAMS.get(stage.step)
        params = model.model_validate(stage.params) if model else None
        per_row = params.llm_calls_per_row() if params else 0.0
        if params is not None and (column := params.items_column()) is not None:
            # calls per item of a list column (one an earlier stage wrote; a source's lists count as 1)
            per_row *= list_lengths.get(column, 1)
        calls = int(round(n * per_row))
        max_tokens = 0
        if stage.backend:
            backend = recipe.backends[stage.backend].generation.model_dump()
            max_tokens = calls * merged_decoding(backend, stage.params.get("generation")).max_new_tokens
        stages.append(StagePlan(stage.name, stage.step, stage.backend, per_row, int(n), calls, max_tokens))
        if params is not None:
            list_lengths.update(params.list_lengths(list_lengths))
        n *= params.rows_out_per_row() if params else 1.0
        cap = params.max_rows_out() if params else None
        if cap is not None:
            n = min(n, float(cap))
    return RecipePlan(source_rows=len(rows), source_label=label, stages=stages)
