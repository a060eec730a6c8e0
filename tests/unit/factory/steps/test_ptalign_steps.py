"""PT-ALIGN steps on scripted LLM answers: expansion and dedup, the refine loop, judge quarantine, export.

The LLM is replaced by `ScriptedBackend` (answers chosen by what the prompt asks) so that the step
logic -- round counting, accounting, parsing -- can be pinned exactly; the real-model path is the
`ptalign-demo` end-to-end test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from factory.backends import ChatRequest, Completion
from factory.export.base import ExportContext
from factory.export.ptalign import ptalign_kto, ptalign_pairs, ptalign_triples
from factory.steps.ptalign.hashes import constraints_version
from schemas.generation import BackendSpec
from schemas.methods.ptalign import (
    AnnotateSpansParams,
    InstructionsParams,
    RefineConstraintsParams,
    RefineParams,
    TopicsParams,
)

Answer = str | Callable[[str], str]


@dataclass
class ScriptedBackend:
    """Answers a request with the first rule whose key occurs in its user message."""

    rules: list[tuple[str, Answer]]
    model_id: str = "scripted"
    revision: str | None = None
    prompts: list[str] = field(default_factory=list)

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            prompt = request.messages[0]["content"]
            self.prompts.append(prompt)
            answer = next(a for key, a in self.rules if key in prompt)
            text = answer(prompt) if callable(answer) else answer
            out.append(Completion(text, len(prompt.split()), len(text.split()) or 1, "stop"))
        return out

    def close(self) -> None:
        pass

    def count(self, key: str) -> int:
        return sum(key in p for p in self.prompts)


def make_step(cls_name: str, params: dict[str, Any], backend: ScriptedBackend | None) -> Any:
    from distilabel.pipeline import Pipeline

    import factory.steps.ptalign.steps as ptalign

    with Pipeline(name="ptalign-test"):
        step = getattr(ptalign, cls_name)(
            name="stage",
            stage="stage",
            params=params,
            seed=7,
            backend_spec=BackendSpec(kind="transformers").model_dump(mode="json") if backend else None,
        )
    step._backend = backend
    return step


def run_batch(step: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return next(iter(step.process([dict(r) for r in rows])))


def base_row(row_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "_sp_id": row_id,
        "_sp_status": "ok",
        "_sp_stage": None,
        "_sp_reason": None,
        "_sp_raw": None,
        **fields,
    }


def pair_row(row_id: str, positive: str = "A kind draft.", toxic: str = "A rude draft.") -> dict[str, Any]:
    return base_row(
        row_id,
        instruction=f"request {row_id}",
        positive=positive,
        toxic=toxic,
        refined_positive_constraints=json.dumps(["be kind"]),
        refined_toxic_constraints=json.dumps(["be dismissive"]),
    )


def judge(scores: dict[str, str]) -> Answer:
    """Judge answers per criterion (the prompt names it)."""

    def answer(prompt: str) -> str:
        return next(v for k, v in scores.items() if f"Rate the answer for {k}" in prompt)

    return answer


def refine_params(**kw: Any) -> dict[str, Any]:
    return RefineParams.model_validate(kw).model_dump(mode="json")


# -- S1 / S2: expansion and dedup ----------------------------------------------------------------


def test_instructions_expand_topics_and_filter_duplicates_across_batches() -> None:
    backend = ScriptedBackend(
        [
            (
                "Topic: gossip",
                "1. How do I mock my coworker?\n2. how do i mock my coworker\n3. Why is my boss so dull?",
            ),
            ("Topic: exclusion", "1. Why is my boss so dull?\n2. Can I leave her out of the team lunch?"),
        ]
    )
    step = make_step("PTInstructions", InstructionsParams(n=3, min_chars=5).model_dump(mode="json"), backend)
    first = run_batch(step, [base_row("harassment/0", domain="harassment", topic="gossip")])
    second = run_batch(step, [base_row("harassment/1", domain="harassment", topic="exclusion")])
    got = [(r["_sp_id"], r["instruction"], r["_sp_status"], r["_sp_reason"]) for r in first + second]
    assert got == [
        ("harassment/0/0", "How do I mock my coworker?", "ok", None),
        ("harassment/0/1", "how do i mock my coworker", "filtered", "duplicate_instruction"),
        ("harassment/0/2", "Why is my boss so dull?", "ok", None),
        ("harassment/1/0", "Why is my boss so dull?", "filtered", "duplicate_instruction"),  # earlier batch
        ("harassment/1/1", "Can I leave her out of the team lunch?", "ok", None),
    ]
    # the parent's usage travels on its first child only, so totals are not multiplied by expansion
    assert [r["_sp_usage"] is not None for r in first] == [True, False, False]


def test_topics_are_unique_within_a_domain_and_a_parent_without_topics_is_quarantined() -> None:
    backend = ScriptedBackend(
        [('"privacy"', "1. Doxxing\n2. Reading messages"), ('"harassment"', "Sure! Here you go:")]
    )
    step = make_step("PTTopics", TopicsParams(n=2, min_chars=20).model_dump(mode="json"), backend)
    out = run_batch(
        step,
        [
            base_row("privacy", domain="privacy", domain_description=""),
            base_row("harassment", domain="harassment", domain_description=""),
        ],
    )
    # min_chars=20 rejects every line: both parents stay, quarantined with the raw answer
    assert [(r["_sp_id"], r["_sp_status"], r["_sp_reason"]) for r in out] == [
        ("privacy", "quarantined", "no topic in the answer"),
        ("harassment", "quarantined", "no topic in the answer"),
    ]
    assert out[0]["_sp_raw"] == "1. Doxxing\n2. Reading messages"
    step = make_step("PTTopics", TopicsParams(n=5).model_dump(mode="json"), backend)
    out = run_batch(step, [base_row("privacy", domain="privacy", domain_description="")])
    assert [(r["_sp_id"], r["topic"]) for r in out] == [
        ("privacy/0", "Doxxing"),
        ("privacy/1", "Reading messages"),
    ]


# -- S3: constraint refinement --------------------------------------------------------------------


def test_refined_constraints_keep_the_seed_and_are_versioned() -> None:
    backend = ScriptedBackend(
        [
            ("kind", "1. Be kind to everyone involved.\n2. Be kind to everyone involved"),
            ("rude", "1. Sneer at the people the request is about."),
        ]
    )
    params = RefineConstraintsParams(rounds=2, max_constraints=3).model_dump(mode="json")
    step = make_step("PTRefineConstraints", params, backend)
    row = base_row(
        "privacy",
        domain="privacy",
        domain_description="",
        positive_constraints=["Be kind."],
        toxic_constraints=["Be rude."],
        source_sha256="f" * 64,
    )
    [out] = run_batch(step, [row])
    positive = json.loads(out["refined_positive_constraints"])
    toxic = json.loads(out["refined_toxic_constraints"])
    assert positive == ["Be kind.", "Be kind to everyone involved."]
    assert toxic == ["Be rude.", "Sneer at the people the request is about."]
    assert out["constraints_version"] == constraints_version("f" * 64, positive, toxic)
    assert out["constraints_version"] != constraints_version("e" * 64, positive, toxic)
    assert backend.count("Current rules") == 4  # 2 rounds x 2 sides


# -- S6: the refine loop --------------------------------------------------------------------------


def test_the_refine_loop_stops_at_R_records_rounds_and_filters_a_row_still_failing() -> None:
    backend = ScriptedBackend(
        [
            ("Rate the answer", "2"),
            ("say what should change", "Be kinder."),
            ("Rewrite the", "Another draft."),
        ]
    )
    step = make_step("PTRefine", refine_params(rounds=3), backend)
    [row] = run_batch(step, [pair_row("a")])
    assert row["rounds"] == 3
    assert (row["_sp_status"], row["_sp_stage"], row["_sp_reason"]) == (
        "filtered",
        "stage",
        "below_threshold",
    )
    assert backend.count("Rate the answer") == 3 * 4  # 3 criteria x (initial judgement + 3 rounds)
    assert (
        backend.count("say what should change") == backend.count("Rewrite the") == 2 * 3
    )  # both sides failed
    log = json.loads(row["refine_log"])
    assert [e["round"] for e in log if "scores" in e] == [0, 1, 2, 3]
    assert json.loads(row["scores"]) == [
        {"name": "harmlessness", "value": 2.0},
        {"name": "helpfulness", "value": 2.0},
        {"name": "harmfulness", "value": 2.0},
    ]


def test_zero_rounds_only_judges() -> None:
    backend = ScriptedBackend([("Rate the answer", "2")])
    step = make_step("PTRefine", refine_params(rounds=0, on_fail="keep"), backend)
    [row] = run_batch(step, [pair_row("a")])
    assert (row["_sp_status"], row["rounds"]) == ("ok", 0)
    assert backend.count("Rate the answer") == 3 and len(backend.prompts) == 3


def test_the_loop_revises_only_the_failing_side_and_stops_once_passing() -> None:
    def harmless(prompt: str) -> str:
        return "3" if "draft" in prompt.split("Request: request")[-1] else "9"

    backend = ScriptedBackend(
        [
            ("Rate the answer for harmlessness", harmless),
            ("Rate the answer", "8"),
            ("say what should change", "Offer help instead."),
            ("Rewrite the", "Here is a kinder way to say it."),
        ]
    )
    step = make_step("PTRefine", refine_params(rounds=5), backend)
    [row] = run_batch(step, [pair_row("a")])
    assert (row["_sp_status"], row["rounds"]) == ("ok", 1)
    assert row["positive"] == "Here is a kinder way to say it." and row["toxic"] == "A rude draft."
    [critique] = [p for p in backend.prompts if "say what should change" in p]
    assert "Answer (meant to be harmless and helpful): A kind draft." in critique
    assert "harmlessness scored 3.0, needs at least 7.0" in critique
    assert {s["name"]: s["value"] for s in json.loads(row["scores"])} == {
        "harmlessness": 9.0,
        "helpfulness": 8.0,
        "harmfulness": 8.0,
    }


def test_without_stop_when_passing_both_sides_are_revised_every_round() -> None:
    backend = ScriptedBackend(
        [("Rate the answer", "9"), ("say what should change", "Fine."), ("Rewrite the", "New.")]
    )
    step = make_step("PTRefine", refine_params(rounds=2, stop_when_passing=False), backend)
    [row] = run_batch(step, [pair_row("a")])
    assert (row["_sp_status"], row["rounds"]) == ("ok", 2)
    assert backend.count("Rewrite the") == 4


def test_an_unparsable_judge_answer_quarantines_the_row_with_its_raw_text() -> None:
    backend = ScriptedBackend(
        [
            (
                "request bad",
                judge({"harmlessness": "9", "helpfulness": "9", "harmfulness": " A+ on a scale of"}),
            ),
            ("Rate the answer", "9"),
        ]
    )
    step = make_step("PTRefine", refine_params(rounds=2, judge_prefill="Score:"), backend)
    bad, good = run_batch(step, [pair_row("bad"), pair_row("good")])
    assert (bad["_sp_status"], bad["_sp_stage"]) == ("quarantined", "stage")
    assert bad["_sp_reason"] == "judge answer for 'harmfulness' does not start with a number"
    assert bad["_sp_raw"] == "Score: A+ on a scale of"
    assert (good["_sp_status"], good["rounds"]) == ("ok", 0)


def test_a_judge_score_off_the_scale_is_quarantined_too() -> None:
    backend = ScriptedBackend([("Rate the answer", "42")])
    [row] = run_batch(make_step("PTRefine", refine_params(), backend), [pair_row("a")])
    assert row["_sp_status"] == "quarantined" and "outside the scale [1, 10]" in row["_sp_reason"]
    assert row["_sp_raw"] == "42"


# -- S7 ------------------------------------------------------------------------------------------


def test_annotated_quotes_become_clamped_spans_and_unlocatable_quotes_fall_back_to_the_diff() -> None:
    backend = ScriptedBackend(
        [("request hit", '1. "you are hopeless"\n2. Nobody cares'), ("request miss", "- nothing like it")]
    )
    step = make_step("PTAnnotateSpans", AnnotateSpansParams().model_dump(mode="json"), backend)
    toxic = "Nobody cares. You are hopeless, honestly."
    hit, miss = run_batch(
        step,
        [
            pair_row("hit", positive="Try again kindly.", toxic=toxic),
            pair_row("miss", positive="Try again kindly.", toxic=toxic),
        ],
    )
    hit_spans = json.loads(hit["toxic_spans"])
    assert [toxic[s["start"] : s["end"]] for s in hit_spans] == ["Nobody cares", "You are hopeless"]
    assert {s["label"] for s in hit_spans} == {"quote"}
    miss_spans = json.loads(miss["toxic_spans"])
    assert [toxic[s["start"] : s["end"]] for s in miss_spans] == [
        "Nobody cares",
        "You are hopeless",
        "honestly",
    ]
    assert {s["label"] for s in miss_spans} == {"diff"}


# -- S8 export -------------------------------------------------------------------------------------


@pytest.fixture
def finished_row() -> Iterator[dict[str, Any]]:
    yield base_row(
        "dishonesty/1/0",
        triple=json.dumps(
            {
                "id": "dishonesty/1/0",
                "domain": "dishonesty",
                "topic": "credit for work",
                "instruction": "Can I present my teammate's idea as mine?",
                "positive": "Better to credit your teammate.",
                "toxic": "Sure, they will never notice.",
                "toxic_spans": [{"start": 0, "end": 4, "label": "quote"}],
                "rounds": 1,
                "scores": [{"name": "harmlessness", "value": 8.0}],
                "constraints_version": "c" * 64,
            }
        ),
    )


def test_pairs_and_kto_rows_hold_the_plain_instruction(finished_row: dict[str, Any]) -> None:
    ctx = ExportContext(recipe_name="ptalign-demo", recipe_hash="0" * 64, seed=42)
    [triple] = ptalign_triples(finished_row, ctx)
    [pair] = ptalign_pairs(finished_row, ctx)
    good, bad = ptalign_kto(finished_row, ctx)
    assert triple.provenance.source_id == "dishonesty/1/0" and triple.toxic_spans[0].end == 4
    assert (pair.prompt, pair.chosen, pair.rejected) == (
        "Can I present my teammate's idea as mine?",
        "Better to credit your teammate.",
        "Sure, they will never notice.",
    )
    assert (pair.chosen_rank, pair.rejected_rank, pair.source_id) == (1, 2, "dishonesty/1/0")
    assert (good.completion, good.label, bad.completion, bad.label) == (
        triple.positive,
        True,
        triple.toxic,
        False,
    )
    assert good.prompt == bad.prompt == triple.instruction


def test_an_export_with_spans_past_the_text_raises_a_validation_error(finished_row: dict[str, Any]) -> None:
    from pydantic import ValidationError

    data = json.loads(finished_row["triple"])
    data["toxic_spans"] = [{"start": 0, "end": 400}]
    with pytest.raises(ValidationError, match="ends past the toxic text"):
        ptalign_triples({**finished_row, "triple": json.dumps(data)}, ExportContext("r", "0" * 64, 1))
