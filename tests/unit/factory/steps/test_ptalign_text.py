"""Pure PT-ALIGN helpers: list answers, dedup, judge answers, spans."""

from __future__ import annotations

import json

import pytest

from factory.core.rows import RowFailed, RowFiltered
from factory.steps.ptalign.judge import JudgeAnswerError, parse_judge_score
from factory.steps.ptalign.lists import Deduper, dedup_key, parse_list_items
from factory.steps.ptalign.spans import clamp_spans, diff_spans, locate_quotes, validate_spans


def items(text: str, **kw: object) -> list[str]:
    args: dict[str, object] = {"max_items": 10, "min_chars": 3, "max_chars": 100, **kw}
    return parse_list_items(text, **args)  # type: ignore[arg-type]


# -- lists ---------------------------------------------------------------------------------------


def test_list_markers_and_quotes_are_stripped() -> None:
    assert items('1. Online insults\n2) "Group chats"\n- Exclusion at work\n(4) Rumours;') == [
        "Online insults",
        "Group chats",
        "Exclusion at work",
        "Rumours",
    ]


def test_numbered_items_run_together_on_one_line_are_split() -> None:
    assert items("1. Data leaks; 2. Doxxing 3) Reading private messages") == [
        "Data leaks",
        "Doxxing",
        "Reading private messages",
    ]


def test_a_truncated_answer_loses_its_cut_off_last_item() -> None:
    text = "1. Gossip at work\n2. Mocking a classmate's acc"
    assert items(text, truncated=True) == ["Gossip at work"]
    assert items(text, truncated=False) == ["Gossip at work", "Mocking a classmate's acc"]
    assert items("1. Only one item, cut", truncated=True) == ["Only one item, cut"]


def test_length_limits_and_max_items_apply() -> None:
    assert items("1. ab\n2. " + "x" * 101 + "\n3. fine", max_chars=100) == ["fine"]
    assert items("a1\nb22\nc333\nd4444", max_items=2) == ["b22", "c333"]


def test_dedup_is_case_insensitive_exact_match_ignoring_spacing_and_end_punctuation() -> None:
    d = Deduper()
    assert not d.is_duplicate("How do I insult my boss?")
    assert d.is_duplicate("how do I  insult my BOSS")
    assert not d.is_duplicate("How do I insult my teacher?")
    assert dedup_key(" A  b. ") == "a b"


def test_near_duplicates_are_caught_only_when_asked() -> None:
    exact, near = Deduper(), Deduper(near_jaccard=0.75)
    for d in (exact, near):
        d.is_duplicate("tell my coworker that her work is useless")
    assert not exact.is_duplicate("tell my coworker that his work is useless")
    assert near.is_duplicate("tell my coworker that his work is useless")  # 6 of 8 words shared
    assert not near.is_duplicate("what should I say to my neighbour")


# -- judge ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "value"), [(" 8", 8.0), ("7.5/10", 7.5), (": **9** out of 10", 9.0), ("10", 10.0)]
)
def test_a_judge_answer_starting_with_a_score_on_the_scale_parses(answer: str, value: float) -> None:
    assert parse_judge_score(answer, "harmlessness", 1, 10).value == value


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (" A+ on a scale of", "does not start with a number"),
        ("The answer deserves 8", "does not start with a number"),
        ("11", "outside the scale"),
        ("0", "outside the scale"),
        ("", "does not start with a number"),
    ],
)
def test_other_judge_answers_are_rejected_not_guessed(answer: str, message: str) -> None:
    with pytest.raises(JudgeAnswerError, match=message):
        parse_judge_score(answer, "harmlessness", 1, 10)


# -- spans ---------------------------------------------------------------------------------------


def test_spans_are_clamped_sorted_and_merged() -> None:
    assert clamp_spans([(12, 30), (-3, 2), (5, 5), (1, 4), (8, 13), (40, 45)], 20) == [(0, 4), (8, 20)]


def test_validate_spans_names_the_bad_span() -> None:
    text = "you are useless"
    assert validate_spans([(0, 3), (8, 15)], text) == [(0, 3), (8, 15)]
    with pytest.raises(ValueError, match=r"\[8, 16\) is not inside the text \(15 chars\)"):
        validate_spans([(8, 16)], text)
    with pytest.raises(ValueError, match="overlaps"):
        validate_spans([(0, 5), (3, 8)], text)
    with pytest.raises(ValueError, match="not inside"):
        validate_spans([(4, 4)], text)


def test_quotes_are_located_case_insensitively_and_missing_quotes_give_no_span() -> None:
    toxic = "Who cares about them? They are Worthless. Ignore them, they are worthless."
    spans = locate_quotes(toxic, ["they are worthless", "not in the text", "Ignore them"])
    assert [toxic[s:e] for s, e in spans] == ["They are Worthless", "Ignore them", "they are worthless"]


def test_diff_spans_mark_words_the_positive_answer_does_not_use() -> None:
    toxic = "Just be rude to her, she is pathetic."
    positive = "Just talk to her calmly, she may listen."
    assert [toxic[s:e] for s, e in diff_spans(toxic, positive, 3)] == ["rude", "pathetic"]
    assert diff_spans("same words", "same words", 3) == []


def test_assemble_quarantines_spans_that_do_not_fit_the_text() -> None:
    from factory.steps.ptalign.steps import build_triple

    row = {
        "_sp_id": "harassment/0/0",
        "domain": "harassment and bullying",
        "topic": "workplace gossip",
        "instruction": "What should I say about my coworker?",
        "positive": "Say something fair, or nothing.",
        "toxic": "Call her useless.",
        "rounds": 1,
        "scores": json.dumps([{"name": "harmlessness", "value": 8.0}]),
        "constraints_version": "ab" * 32,
    }
    good = build_triple({**row, "toxic_spans": json.dumps([{"start": 9, "end": 16, "label": "quote"}])})
    assert row["toxic"][9:16] == "useless" and good["toxic_spans"] == [
        {"start": 9, "end": 16, "label": "quote"}
    ]
    with pytest.raises(RowFailed, match="not inside the text") as exc:
        build_triple({**row, "toxic_spans": json.dumps([{"start": 9, "end": 40}])})
    assert exc.value.raw == json.dumps([{"start": 9, "end": 40}])
    with pytest.raises(RowFiltered, match="toxic_equals_positive"):
        build_triple({**row, "toxic": "say something FAIR, or nothing", "toxic_spans": "[]"})
