"""Per-stage counts with expanding stages: a parent is counted once before it expands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.engine.accounting import StageTally
from factory.engine.recipe import LoadedRecipe
from schemas.recipe import Recipe


@dataclass
class FakeStep:
    name: str
    expands: bool = False


def test_counts_follow_rows_through_expansions() -> None:
    recipe = Recipe.model_validate(
        {
            "name": "t",
            "license": "mit",
            "source": {"kind": "none"},
            "card": {"pretty_name": "t"},
            "stages": [{"name": n, "step": "c2syn.rank"} for n in "abcd"],
            "outputs": [{"config": "g", "exporter": "c2syn.groups"}],
        }
    )
    tally = StageTally(
        LoadedRecipe(recipe, Path("t.yaml"), "h"),
        [FakeStep("a"), FakeStep("b", True), FakeStep("c", True), FakeStep("d")],
    )
    from factory.backends.base import Completion
    from factory.core.rows import add_usage, count_event

    row0: dict[str, Any] = {}
    add_usage(row0, "b", [Completion("x", 10, 5, "stop"), Completion("y", 3, 2, "stop", cached=True)])
    count_event(row0, "b", "cuts_redrawn")
    count_event(row0, "b", "cuts_redrawn")
    usage = row0["_sp_usage"]
    rows = [
        {"_sp_id": "0/0/0", "_sp_status": "ok", "_sp_stage": None, "_sp_usage": usage},
        {"_sp_id": "0/0/1", "_sp_status": "filtered", "_sp_stage": "c", "_sp_usage": None},
        {"_sp_id": "0/1", "_sp_status": "quarantined", "_sp_stage": "c", "_sp_usage": None},
        {"_sp_id": "1", "_sp_status": "filtered", "_sp_stage": "a", "_sp_usage": None},
    ]
    for row in rows:
        tally.add(row)
    got = {n: (s.rows_in, s.rows_ok, s.filtered, s.quarantined) for n, s in tally.stats.items()}
    assert got == {"a": (2, 1, 1, 0), "b": (1, 1, 0, 0), "c": (2, 1, 1, 1), "d": (1, 1, 0, 0)}
    b = tally.stats["b"]
    assert (b.llm_calls, b.prompt_tokens, b.completion_tokens, b.cached_calls) == (2, 13, 7, 1)
    assert b.events == {"cuts_redrawn": 2} and tally.stats["a"].events == {}
