"""The generic exporters (pairs, SFT and KTO rows, plain and conversational) on finished rows, and the
writer's accounting of a row an exporter's rule filters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from factory.core.rows import RowFiltered
from factory.export.base import ExportContext, exporter_function
from schemas.recipe import OutputSpec
from schemas.records import (
    ConversationalKTORow,
    ConversationalPair,
    ConversationalSFTRow,
    KTORow,
    PreferencePair,
    SFTRow,
)
from schemas.registry import EXPORTER_PARAMS

CTX = ExportContext(recipe_name="r", recipe_hash="0" * 64, seed=1)


def export(exporter: str, row: dict[str, Any], **params: Any) -> list[Any]:
    """Records as the writer makes them: params validated by the recipe's OutputSpec, then the model."""
    spec = OutputSpec(config="c", exporter=exporter, params=params)
    ctx = ExportContext(**{**CTX.__dict__, "params": EXPORTER_PARAMS[exporter].model_validate(spec.params)})
    return exporter_function(exporter)(row, ctx)


def ranked_row(**fields: Any) -> dict[str, Any]:
    return {
        "_sp_id": "7",
        "prompt": "How do I calm a barking dog?",
        "ranked": ["Try a walk first.", "Give it a toy.", "Yell at it.", "Ignore it."],
        "ranked_scores": [27.0, 24.0, 24.0, 9.0],
        **fields,
    }


def test_best_vs_worst_pairs_the_top_with_the_bottom_of_the_ranking() -> None:
    [pair] = export("pairs", ranked_row(), principle="judge_preference")
    assert isinstance(pair, PreferencePair)
    assert (pair.chosen, pair.rejected, pair.chosen_rank, pair.rejected_rank) == (
        "Try a walk first.",
        "Ignore it.",
        1,
        4,
    )
    assert (pair.source_id, pair.group_id, pair.principle) == ("7", "g-7", "judge_preference")


def test_all_pairs_keep_only_strictly_better_ones_beyond_the_margin() -> None:
    pairs = export("pairs", ranked_row(), pairing="all", min_margin=3)
    # 27-24 twice, 27-9, 24-9 twice; the tie 24 = 24 (both rank 2) makes no pair
    assert [(p.chosen_rank, p.rejected_rank) for p in pairs] == [(1, 2), (1, 2), (1, 4), (2, 4), (2, 4)]
    wide = export("pairs", ranked_row(), pairing="all", min_margin=10)
    assert [(p.chosen, p.rejected) for p in wide] == [
        ("Try a walk first.", "Ignore it."),
        ("Give it a toy.", "Ignore it."),
        ("Yell at it.", "Ignore it."),
    ]


def test_scores_order_an_unsorted_list_and_without_scores_the_list_order_is_the_ranking() -> None:
    row = ranked_row(responses=["b", "a", "c"], scores=[2, 8, 5])
    [pair] = export("pairs", row, responses_column="responses", scores_column="scores")
    assert (pair.chosen, pair.rejected) == ("a", "b")
    [listed] = export("pairs", row, responses_column="responses", scores_column=None)
    assert (listed.chosen, listed.rejected, listed.rejected_rank) == ("b", "c", 3)


def test_a_row_without_a_usable_pair_is_filtered_not_quarantined() -> None:
    with pytest.raises(RowFiltered) as tie:
        export("pairs", ranked_row(ranked_scores=[5.0, 5.0, 5.0, 5.0]))
    assert tie.value.rule == "no_preference_pair"
    with pytest.raises(RowFiltered):  # best and worst say the same thing
        export("pairs", ranked_row(ranked=["Same.", "x", "y", " Same. "]))
    with pytest.raises(RowFiltered):
        export("pairs", ranked_row(), min_margin=20)


def test_conversational_pairs_carry_the_system_prompt_and_validate() -> None:
    [pair] = export("pairs_conversational", ranked_row(), system_prompt="Be safe.")
    assert isinstance(pair, ConversationalPair)
    assert [m.model_dump() for m in pair.prompt] == [
        {"role": "system", "content": "Be safe."},
        {"role": "user", "content": "How do I calm a barking dog?"},
    ]
    assert pair.chosen[0].content == "Try a walk first." and pair.rejected[0].role == "assistant"


def test_sft_rows_take_the_best_or_every_item_above_a_score() -> None:
    [best] = export("sft", ranked_row())
    assert isinstance(best, SFTRow) and (best.prompt, best.completion) == (
        "How do I calm a barking dog?",
        "Try a walk first.",
    )
    good = export("sft", ranked_row(), take="all", scores_column="ranked_scores", min_score=24)
    assert [r.completion for r in good] == ["Try a walk first.", "Give it a toy.", "Yell at it."]
    text = export("sft", {"_sp_id": "1", "prompt": "p", "answer": "a"}, response_column="answer")
    assert [r.completion for r in text] == ["a"]
    with pytest.raises(RowFiltered, match="no_sft_response"):
        export("sft", ranked_row(), scores_column="ranked_scores", min_score=30)
    [chat] = export("sft_conversational", ranked_row(), system_prompt="Be safe.")
    assert isinstance(chat, ConversationalSFTRow)
    assert [m.role for m in chat.messages] == ["system", "user", "assistant"]


def test_kto_rows_from_best_and_worst_or_from_thresholds() -> None:
    rows = export("kto", ranked_row())
    assert all(isinstance(r, KTORow) for r in rows)
    assert [(r.completion, r.label) for r in rows] == [("Try a walk first.", True), ("Ignore it.", False)]
    by_score = export("kto", ranked_row(), labels="threshold", desirable_min=24, undesirable_max=10)
    assert [(r.completion, r.label) for r in by_score] == [
        ("Try a walk first.", True),
        ("Give it a toy.", True),
        ("Yell at it.", True),
        ("Ignore it.", False),
    ]
    with pytest.raises(RowFiltered, match="no_kto_row"):
        export("kto", ranked_row(), labels="threshold", desirable_min=28, undesirable_max=8)
    chat = export("kto_conversational", ranked_row())
    assert (
        all(isinstance(r, ConversationalKTORow) for r in chat)
        and chat[1].completion[0].content == "Ignore it."
    )


def test_sft_takes_the_best_scored_item_as_pairs_and_kto_would() -> None:
    row = ranked_row(responses=["b", "a", "c"], scores=[2, 8, 5])
    [best] = export("sft", row, response_column="responses", scores_column="scores")
    assert best.completion == "a"
    every = export("sft", row, response_column="responses", scores_column="scores", take="all")
    assert [r.completion for r in every] == ["a", "c", "b"]
    [first] = export("sft", row, response_column="responses")  # unscored: the list order is the ranking
    assert first.completion == "b"


def test_kto_best_and_worst_without_a_winner_is_filtered_as_no_kto_row() -> None:
    with pytest.raises(RowFiltered, match="no_kto_row"):
        export("kto", ranked_row(ranked_scores=[5.0, 5.0, 5.0, 5.0]))


@pytest.mark.parametrize(
    ("exporter", "params", "message"),
    [
        (
            "pairs",
            {"scores_column": None, "min_margin": 2},
            "min_margin compares scores: it needs scores_column",
        ),
        (
            "kto",
            {"scores_column": None, "min_margin": 2},
            "min_margin compares scores: it needs scores_column",
        ),
        ("kto", {"desirable_min": 8}, "desirable_min and undesirable_max apply to labels threshold"),
        (
            "kto_conversational",
            {"labels": "threshold", "desirable_min": 8, "undesirable_max": 3, "min_margin": 1},
            "min_margin applies to labels best_and_worst, not threshold",
        ),
        ("sft", {"min_score": 3}, "min_score needs scores_column"),
    ],
)
def test_exporter_params_that_the_chosen_mode_would_ignore_are_refused(
    exporter: str, params: dict[str, Any], message: str
) -> None:
    from factory.core.errors import UserError
    from factory.engine.recipe import load_recipe

    sets = [f"outputs.pairs.exporter={exporter}"] + [
        f"outputs.pairs.params.{k}={'null' if v is None else v}" for k, v in params.items()
    ]
    with pytest.raises(UserError) as err:
        load_recipe("safe-completion-demo", ["outputs.pairs.params={}", *sets])
    assert f"outputs[pairs].params: {message}" in str(err.value) and "\n" not in str(err.value)


def test_threshold_kto_needs_ordered_bounds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="desirable_min must be above undesirable_max"):
        OutputSpec(
            config="k",
            exporter="kto",
            params={"labels": "threshold", "desirable_min": 3, "undesirable_max": 5},
        )


def test_the_writer_counts_a_row_an_exporter_filters_under_its_rule(tmp_path: Path) -> None:
    from factory.export.writer import write_records

    ok = {**ranked_row(), "_sp_status": "ok"}
    tie = {**ranked_row(ranked_scores=[1.0] * 4), "_sp_id": "8", "_sp_status": "ok"}
    broken = {**ranked_row(ranked_scores=[1.0]), "_sp_id": "9", "_sp_status": "ok"}  # scores do not fit
    outputs = [
        OutputSpec(config="chat", exporter="pairs_conversational", default=True),
        OutputSpec(config="plain", exporter="pairs"),
    ]
    result = write_records(tmp_path, [ok, tie, broken], outputs, CTX)
    assert result.output_rows == 1
    assert result.filtered == {"no_preference_pair": 1} and result.quarantined == {"export": 1}
    [filtered] = pq.read_table(tmp_path / "filtered" / "rows.parquet").to_pylist()
    assert (filtered["_sp_id"], filtered["stage"], filtered["rule"]) == ("8", "export", "no_preference_pair")
    [quarantined] = pq.read_table(tmp_path / "quarantine" / "rows.parquet").to_pylist()
    assert quarantined["reason"].startswith("invalid record: ValueError: column 'ranked_scores'")
    assert json.loads(quarantined["input"])["ranked_scores"] == [1.0]
    assert result.configs["chat"]["splits"]["train"]["num_rows"] == 1
    assert result.configs["plain"]["schema"] == "preference_pair"
