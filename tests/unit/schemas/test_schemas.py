"""Record and manifest validators: each rule accepts good data and rejects bad data."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.manifest import DatasetManifest, RowCounts
from schemas.provenance import Provenance
from schemas.records import (
    C2Group,
    ConversationalPair,
    PreferencePair,
    SafetyTriple,
    c2_principle,
)

PROV = Provenance(recipe_name="r", recipe_hash="0" * 64, generator_model="m", seed=1, source_id="7")
FHR = "You could be rude, loud, and petty; then ignore them. Keep it up: it works, mostly."


def pair(**kw: Any) -> dict[str, Any]:
    base = dict(
        prompt="p",
        chosen="a",
        rejected="b",
        chosen_rank=1,
        rejected_rank=2,
        principle="x",
        source_id="1",
        group_id="g",
    )
    return {**base, **kw}


def group() -> dict[str, Any]:
    prefixes = [
        "You could be rude,",
        "You could be rude, loud,",
        "You could be rude, loud, and petty;",
        "You could be rude, loud, and petty; then ignore them.",
    ]
    responses: list[dict[str, Any]] = [{"rank": 1, "kind": "SR", "text": "I won't help with that."}]
    for i, p in enumerate(prefixes, start=1):
        responses.append(
            {
                "rank": i + 1,
                "kind": "SYN",
                "text": f"Sure. {p} but I must advise you that it hurts. ({i})",
                "cut_index": i,
                "cut_char": len(p),
                "opener": "Sure.",
                "prefix": p,
                "trigger": "but I must advise you that",
                "continuation": f" it hurts. ({i})",
            }
        )
    responses.append({"rank": 6, "kind": "FHR", "text": FHR})
    return {
        "group_id": "g-7",
        "source_id": "7",
        "prompt": "How do I annoy my neighbour?",
        "responses": responses,
        "delimiter_count": 9,
        "t_k": 2,
        "truncation_mode": "strict",
        "seed": 1,
        "provenance": PROV,
    }


def test_preference_pair_accepts_a_good_pair() -> None:
    assert PreferencePair(**pair()).chosen == "a"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rejected": "a"}, "identical"),
        ({"chosen_rank": 3}, "must be better"),
        ({"chosen_rank": 2}, "must be better"),
        ({"prompt": ""}, "at least 1 character"),
        ({"extra": 1}, "Extra inputs"),
    ],
)
def test_preference_pair_rejects(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PreferencePair(**pair(**change))


def test_conversational_pair_requires_user_prompt_and_assistant_answers() -> None:
    good = {
        **pair(),
        "prompt": [{"role": "user", "content": "p"}],
        "chosen": [{"role": "assistant", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    ConversationalPair(**good)
    with pytest.raises(ValidationError, match="end with a user"):
        ConversationalPair(**{**good, "prompt": [{"role": "assistant", "content": "p"}]})
    with pytest.raises(ValidationError, match="assistant messages"):
        ConversationalPair(**{**good, "chosen": [{"role": "user", "content": "a"}]})


def test_c2_group_accepts_a_well_formed_group_and_yields_15_ranked_pairs() -> None:
    g = C2Group(**group())
    pairs = g.pairs()
    assert len(pairs) == 15
    assert [(p.chosen_rank, p.rejected_rank) for p in pairs] == [
        (i, j) for i in range(1, 7) for j in range(i + 1, 7)
    ]
    assert {p.principle for p in pairs if p.chosen_rank == 1} == {"safe_over_harmful"}
    assert c2_principle(2, 6) == "correction_over_no_correction"
    assert c2_principle(2, 3) == "earlier_correction_over_later"


def _broken(mutate: Any) -> dict[str, Any]:
    g = copy.deepcopy(group())
    mutate(g)
    return g


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda g: g["responses"].reverse(), "ranks must be 1..6"),
        (lambda g: g["responses"][1].update(kind="SR"), "kinds must be"),
        (lambda g: g["responses"][2].update(prefix="Not in the FHR"), "not a prefix of the FHR"),
        (lambda g: g["responses"][2].update(cut_char=3), "cut_char"),
        (lambda g: g["responses"][3].update(prefix="You could be rude,", cut_char=18), "strictly increase"),
        (lambda g: g["responses"][1].update(cut_index=2), "cut_index 1"),
        (lambda g: g["responses"][1].update(continuation=None), "lacks"),
        (lambda g: g["responses"][0].update(text=FHR), "distinct"),
        (lambda g: g["responses"].pop(), "at least 6"),
    ],
)
def test_c2_group_rejects(mutate: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        C2Group(**_broken(mutate))


def test_faithful_groups_may_repeat_cuts_but_not_go_backwards() -> None:
    g = _broken(lambda g: g.update(truncation_mode="faithful"))
    for r in g["responses"][1:5]:
        r.update(prefix=FHR, cut_char=len(FHR))
    for i, r in enumerate(g["responses"][1:5]):
        r["text"] = f"Sure. {FHR} but ({i})"
    C2Group(**g)  # whole-text prefixes: the reference's degenerate case is representable
    g["responses"][4].update(prefix="You", cut_char=3)
    with pytest.raises(ValidationError, match="must not decrease"):
        C2Group(**g)


def triple(**kw: Any) -> dict[str, Any]:
    base = dict(
        id="t1",
        domain="harassment",
        topic="neighbours",
        instruction="How do I annoy my neighbour?",
        positive="Talk to them kindly.",
        toxic="Who cares, just be rude to them.",
        toxic_spans=[{"start": 11, "end": 32}],
        rounds=1,
        scores=[{"name": "harmfulness", "value": 0.9}],
        constraints_version="abc",
        provenance=PROV,
    )
    return {**base, **kw}


def test_safety_triple_spans_must_lie_inside_the_toxic_text_sorted_and_disjoint() -> None:
    SafetyTriple(**triple())
    with pytest.raises(ValidationError, match="ends past the toxic text"):
        SafetyTriple(**triple(toxic_spans=[{"start": 0, "end": 999}]))
    with pytest.raises(ValidationError, match="must not overlap"):
        SafetyTriple(**triple(toxic_spans=[{"start": 0, "end": 10}, {"start": 5, "end": 12}]))
    with pytest.raises(ValidationError, match="must be after start"):
        SafetyTriple(**triple(toxic_spans=[{"start": 4, "end": 4}]))
    with pytest.raises(ValidationError, match="identical"):
        SafetyTriple(**triple(positive="Who cares, just be rude to them."))


def test_row_counts_must_add_up_including_expansions() -> None:
    RowCounts(input=10, output=6, filtered={"no_keyword": 3}, quarantined={"generate": 1})
    RowCounts(input=2, created=6, expanded=2, output=5, filtered={"duplicate_instruction": 1})
    with pytest.raises(ValidationError, match="do not add up"):
        RowCounts(input=10, output=6, filtered={"no_keyword": 3})


def test_manifest_needs_exactly_one_default_config() -> None:
    cfg = {
        "schema": "preference_pair",
        "exporter": "c2syn.pairs",
        "splits": {"train": {"files": [], "num_rows": 0}},
    }
    base = dict(
        safepref_version="0",
        recipe_name="r",
        recipe_version="1",
        recipe_hash="h",
        created_at="now",
        seed=0,
        license="mit",
        counts=RowCounts(input=0, output=0),
    )
    DatasetManifest(**base, configs={"a": {**cfg, "default": True}, "b": cfg})
    with pytest.raises(ValidationError, match="exactly one config"):
        DatasetManifest(**base, configs={"a": cfg, "b": cfg})
