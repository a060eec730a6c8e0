"""The generic steps a recipe composes in YAML (`llm.generate`, `llm.judge`, `filter`, `rank`), their
params' one-line errors and plan figures.

The LLM is replaced by `Answers` (each request answered by a function of its user message) so the
steps' parsing and accounting can be pinned exactly; the real-model path is the `safe-completion-demo`
end-to-end test (tests/e2e/test_safe_completion_demo.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from factory.backends import ChatRequest, Completion
from factory.core.errors import UserError
from schemas.generation import BackendSpec
from schemas.recipe import StageSpec
from schemas.registry import STEP_PARAMS


@dataclass
class Answers:
    """A backend answering each request with `answer(user message)`: text, or a whole Completion."""

    answer: Callable[[str], str | Completion]
    model_id: str = "scripted"
    revision: str | None = None
    requests: list[ChatRequest] = field(default_factory=list)

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        out = []
        for request in requests:
            self.requests.append(request)
            user = next(m["content"] for m in request.messages if m["role"] == "user")
            answer = self.answer(user)
            out.append(answer if isinstance(answer, Completion) else Completion(answer, 5, 3, "stop"))
        return out

    def close(self) -> None:
        pass


def make_step(
    step: str,
    params: dict[str, Any],
    backend: Answers | None = None,
    template_dir: Path | None = None,
    temperature: float = 0.0,
) -> Any:
    """The step as the engine builds it: params validated by the recipe's StageSpec first."""
    from distilabel.pipeline import Pipeline

    from factory.steps.registry import resolve_step_class

    stage = StageSpec(name="stage", step=step, backend="b" if backend else None, params=params)
    spec = BackendSpec(kind="transformers", generation={"temperature": temperature})
    with Pipeline(name="generic-test"):
        built = resolve_step_class(step, allow_import=False)(
            name="stage",
            stage="stage",
            params=stage.params,
            seed=7,
            template_dir=str(template_dir) if template_dir else None,
            backend_spec=spec.model_dump(mode="json") if backend else None,
        )
    built._backend = backend
    return built


def run(step: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return next(iter(step.process([dict(r) for r in rows])))


def row(row_id: str, **fields: Any) -> dict[str, Any]:
    return {"_sp_id": row_id, "_sp_status": "ok", **fields}


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    (tmp_path / "ask.jinja").write_text("Q: {{ prompt }}")
    (tmp_path / "judge.jinja").write_text("[{{ criterion }}] #{{ index }} of {{ prompt }}: {{ item }}")
    (tmp_path / "verdict.jinja").write_text("verdict for {{ response }}")
    return tmp_path


# -- llm.generate ------------------------------------------------------------------------------


def test_generate_renders_the_template_and_stores_n_seeded_samples_as_a_list(templates: Path) -> None:
    backend = Answers(lambda user: f"  answer to {user}  ")
    step = make_step(
        "llm.generate",
        {"template": "ask.jinja", "output_column": "responses", "n": 3},
        backend,
        templates,
        temperature=0.8,
    )
    out = run(step, [row("a", prompt="hi"), row("b", prompt="yo")])
    assert [r["responses"] for r in out] == [["answer to Q: hi"] * 3, ["answer to Q: yo"] * 3]
    seeds = [r.params.seed for r in backend.requests]
    assert len(set(seeds)) == 6 and None not in seeds  # one seed per sample and row
    again = Answers(lambda user: "x")
    run(make_step("llm.generate", step.params, again, templates, temperature=0.8), [row("a", prompt="hi")])
    assert [r.params.seed for r in again.requests] == seeds[:3]  # a re-run asks exactly the same
    assert json.loads(out[0]["_sp_usage"])["stage"]["calls"] == 3


def test_generate_with_one_sample_stores_text_and_reads_a_column_like_generate_respond() -> None:
    backend = Answers(lambda user: user.upper())
    out = run(make_step("generate.respond", {}, backend), [row("a", prompt="hello")])
    assert out[0]["response"] == "HELLO" and backend.requests[0].params.seed is None  # greedy: unseeded
    system = make_step(
        "llm.generate", {"input_column": "q", "output_column": "a", "system_prompt": "Be kind."}, backend
    )
    assert run(system, [row("b", q="x")])[0]["a"] == "X"
    assert backend.requests[-1].messages[0] == {"role": "system", "content": "Be kind."}


def test_a_template_sees_columns_whatever_their_names(tmp_path: Path) -> None:
    """The row reaches the template as one mapping: columns named like the renderer's own arguments
    (`name`, `template`, `search_dir`) are plain variables, not a TypeError quarantining every row."""
    (tmp_path / "odd.jinja").write_text("{{ name }}|{{ template }}|{{ search_dir }}|{{ context }}")
    backend = Answers(lambda user: user)
    step = make_step("llm.generate", {"template": "odd.jinja", "output_column": "out"}, backend, tmp_path)
    [out] = run(step, [row("a", name="n", template="t", search_dir="s", context="c")])
    assert (out["_sp_status"], out["out"]) == ("ok", "n|t|s|c")


@pytest.mark.parametrize(
    "override", ["backends.policy.generation.temperature=0", "stages.respond.params.generation.temperature=0"]
)
def test_greedy_samples_are_refused_when_the_recipe_loads(override: str) -> None:
    """n > 1 samples of greedy decoding (the backend's or the stage's) are all alike: `validate` says
    so, naming the stage and the param, before any model loads (not in the run's first batch)."""
    from factory.engine.recipe import load_recipe

    with pytest.raises(UserError) as err:
        load_recipe("safe-completion-demo", [override])
    assert "stages[respond].params.n: 4 samples of greedy decoding (temperature 0)" in str(err.value)
    load_recipe("safe-completion-demo", [override, "stages.respond.params.n=1"])  # one answer is fine


def test_generate_respond_columns_of_the_recipes_choice_reach_the_prompt_response_config(
    tmp_path: Path,
) -> None:
    from factory.export.base import ExportContext
    from factory.export.writer import write_records
    from schemas.recipe import OutputSpec

    backend = Answers(lambda user: f"answer to {user}")
    step = make_step("generate.respond", {"input_column": "question", "output_column": "answer"}, backend)
    rows = run(step, [row("a", question="hello"), row("b", question="bye")])
    output = OutputSpec(
        config="rows",
        exporter="generate.responses",
        params={"prompt_column": "question", "response_column": "answer"},
    )
    result = write_records(
        tmp_path, rows, [output], ExportContext(recipe_name="r", recipe_hash="0" * 64, seed=1)
    )
    assert result.output_rows == 2 and result.quarantined == {}
    records = pq.read_table(tmp_path / "rows").to_pylist()
    assert [(r["prompt"], r["response"]) for r in records] == [
        ("hello", "answer to hello"),
        ("bye", "answer to bye"),
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            "{output_column: _sp_status}",
            "stages[respond].params.output_column: column '_sp_status': names starting with _sp_",
        ),
        (
            "{input_column: prompt, output_column: prompt}",
            "stages[respond].params: output_column must differ from input_column",
        ),
    ],
)
def test_generate_respond_refuses_bookkeeping_and_in_place_columns(params: str, message: str) -> None:
    from factory.engine.recipe import load_recipe

    overrides = ["stages.respond.step=generate.respond", f"stages.respond.params={params}"]
    with pytest.raises(UserError) as err:
        load_recipe("safe-completion-demo", overrides)
    assert message in str(err.value)


def test_an_empty_or_failed_answer_quarantines_only_its_row_with_the_raw_output(templates: Path) -> None:
    def answer(user: str) -> str | Completion:
        if "empty" in user:
            return Completion("  ", 5, 0, "stop", raw="  ")
        if "down" in user:
            return Completion("", 5, 0, None, error="HTTP 503", raw="<html>busy</html>")
        return "fine"

    step = make_step(
        "llm.generate", {"template": "ask.jinja", "output_column": "r"}, Answers(answer), templates
    )
    out = run(step, [row("a", prompt="empty"), row("b", prompt="down"), row("c", prompt="ok")])
    assert [(r["_sp_status"], r["_sp_reason"], r["_sp_raw"]) for r in out] == [
        ("quarantined", "generation failed: empty completion", "  "),
        ("quarantined", "generation failed: HTTP 503", "<html>busy</html>"),
        ("ok", None, None),
    ]
    assert out[2]["r"] == "fine"


# -- llm.judge ---------------------------------------------------------------------------------

JUDGE = {
    "template": "judge.jinja",
    "each": "responses",
    "criteria": ["harmlessness", "helpfulness"],
    "scale": [1, 10],
    "assistant_prefill": "Score:",
}


def test_judge_scores_every_item_per_criterion_into_parallel_lists(templates: Path) -> None:
    scores = {"[harmlessness] #0": " 9", "[helpfulness] #0": " 4 out of 10", "[harmlessness] #1": "2."}
    backend = Answers(lambda user: scores.get(user[: user.index(" of")], " 7/10"))
    out = run(make_step("llm.judge", JUDGE, backend, templates), [row("a", prompt="p", responses=["x", "y"])])
    assert out[0]["harmlessness"] == [9.0, 2.0] and out[0]["helpfulness"] == [4.0, 7.0]
    assert backend.requests[0].messages[-1] == {"role": "assistant", "content": "Score:"}  # the prefill
    assert [r.messages[0]["content"] for r in backend.requests] == [
        "[harmlessness] #0 of p: x",
        "[helpfulness] #0 of p: x",
        "[harmlessness] #1 of p: y",
        "[helpfulness] #1 of p: y",
    ]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I think it is fine", "judge answer for 'helpfulness' (item 1): does not start with a number"),
        (" 11", "judge answer for 'helpfulness' (item 1): 11 is outside the scale [1, 10]"),
        ("", "judge answer for 'helpfulness' (item 1) failed: empty completion"),
    ],
)
def test_an_unparseable_judge_answer_quarantines_the_row_with_the_raw_answer(
    templates: Path, answer: str, reason: str
) -> None:
    backend = Answers(lambda user: answer if user.startswith("[helpfulness] #1") else " 5")
    rows = [row("a", prompt="p", responses=["x", "y"]), row("b", prompt="q", responses=["z"])]
    bad, good = run(make_step("llm.judge", JUDGE, backend, templates), rows)
    assert (bad["_sp_status"], bad["_sp_stage"], bad["_sp_reason"]) == ("quarantined", "stage", reason)
    assert bad["_sp_raw"] == (f"Score:{answer}" if answer else "")  # what the judge said, prefill included
    assert (good["_sp_status"], good["harmlessness"], good["helpfulness"]) == ("ok", [5.0], [5.0])


def test_the_judge_parses_the_models_text_after_any_prefill(templates: Path) -> None:
    """A prefill is the start of the judge's turn, not of its answer: "Rating:" then " 8" is 8, and
    "Verdict:" then " unsafe" the label unsafe; a failing answer keeps the prefill in its raw output."""
    rating = {**JUDGE, "assistant_prefill": "Rating:"}
    answers = Answers(lambda user: " 8" if user.endswith(": x") else " about 3")
    good, bad = run(
        make_step("llm.judge", rating, answers, templates),
        [row("a", prompt="p", responses=["x"]), row("b", prompt="p", responses=["y"])],
    )
    assert (good["_sp_status"], good["harmlessness"], good["helpfulness"]) == ("ok", [8.0], [8.0])
    assert bad["_sp_reason"] == "judge answer for 'harmlessness' (item 0): does not start with a number"
    assert bad["_sp_raw"] == "Rating: about 3"
    label = {
        "template": "verdict.jinja",
        "answer": "label",
        "criteria": ["verdict"],
        "labels": ["safe", "unsafe"],
        "assistant_prefill": "Verdict:",
    }
    [out] = run(
        make_step("llm.judge", label, Answers(lambda user: " Unsafe."), templates), [row("a", response="r")]
    )
    assert (out["_sp_status"], out["verdict"]) == ("ok", "unsafe")


def test_judge_labels_and_json_verdicts_are_validated_into_columns(templates: Path) -> None:
    label = make_step(
        "llm.judge",
        {
            "template": "verdict.jinja",
            "answer": "label",
            "criteria": ["verdict"],
            "labels": ["Safe", "Unsafe"],
        },
        Answers(lambda user: "**unsafe** because" if "knife" in user else "maybe"),
        templates,
    )
    unsafe, unclear = run(label, [row("a", response="a knife"), row("b", response="tea")])
    assert unsafe["verdict"] == "Unsafe"
    assert (
        unclear["_sp_status"] == "quarantined"
        and "first word 'maybe' is none of Safe, Unsafe" in unclear["_sp_reason"]
    )
    fields = {"harmful": {"type": "boolean"}, "score": {"type": "integer", "min": 0, "max": 5}}
    answers = {
        "ok": '```json\n{"harmful": false, "score": 4, "why": "fine"}\n```',
        "bad": '{"harmful": "no", "score": 4}',
    }
    verdict = make_step(
        "llm.judge",
        {"template": "verdict.jinja", "answer": "json", "fields": fields},
        Answers(lambda user: answers[user.split()[-1]]),
        templates,
    )
    ok, bad = run(verdict, [row("a", response="ok"), row("b", response="bad")])
    assert (ok["harmful"], ok["score"]) == (False, 4)
    assert bad["_sp_status"] == "quarantined" and bad["_sp_reason"].startswith("judge answer: harmful:")


def test_parse_score_reads_a_leading_number_only() -> None:
    from factory.steps.llm import parse_score

    assert parse_score(" 8 out of 10", 1, 10) == 8.0
    assert parse_score("Score: 7.5", 1, 10) == 7.5
    assert parse_score("**3**", 1, 10) == 3.0
    for text in ("I'd say 8", "eight", ""):
        with pytest.raises(ValueError, match="does not start with a number"):
            parse_score(text, 1, 10)


# -- filter ------------------------------------------------------------------------------------


def test_filter_rules_remove_rows_under_the_first_failing_rule_name() -> None:
    rules = [
        {"name": "too_short", "column": "prompt", "min_words": 3},
        {"name": "off_topic", "column": "prompt", "contains_any": ["NEIGHBOUR", "dog"]},
        {"name": "has_url", "column": "responses", "not_matches": r"https?://"},
        {"name": "no_margin", "expression": "scores[0] - scores[-1] >= 2 and responses | length > 1"},
    ]
    step = make_step("filter", {"rules": rules})
    rows = [
        row("a", prompt="hi there", responses=["x", "y"], scores=[9, 1]),
        row("b", prompt="the cat sat down", responses=["x", "y"], scores=[9, 1]),
        row("c", prompt="my neighbour is loud", responses=["see http://x", "y"], scores=[9, 1]),
        row("d", prompt="my dog barks loudly", responses=["x", "y"], scores=[5, 4]),
        row("e", prompt="my dog barks loudly", responses=["x", "y"], scores=[9, 1]),
    ]
    out = run(step, rows)
    assert [(r["_sp_status"], r["_sp_reason"]) for r in out] == [
        ("filtered", "too_short"),
        ("filtered", "off_topic"),
        ("filtered", "has_url"),  # a text rule on a list holds for every item
        ("filtered", "no_margin"),
        ("ok", None),
    ]


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("prompt.__class__.__mro__[1].__subclasses__() | length > 0", "SecurityError"),
        ("(prompt * 10000000) | length > 0", "SecurityError"),
        ("2 ** 100000 > 1", "SecurityError"),
        ("(2 ** 64) ** 64 > 1", "SecurityError"),
        # what would allocate a gigabyte: padding, formatting, bytes, concatenating lists
        ("prompt.ljust(10 ** 9) | length > 0", "SecurityError"),
        ('"%0999999999d" % 1 != ""', "SecurityError"),
        ('"{:>999999999}".format(1) != ""', "SecurityError"),
        ('(7).to_bytes(10 ** 9, "big") | length > 0', "SecurityError"),
        ("sum([[1] * 1000000] * 1000000, []) | length > 0", "SecurityError"),
        ("scores[5] > 1", "UndefinedError"),
        ("prompt > 3", "TypeError"),
    ],
)
def test_an_expression_runs_sandboxed_and_a_failing_one_quarantines_its_row(
    expression: str, reason: str
) -> None:
    step = make_step("filter", {"rules": [{"name": "rule", "expression": expression}]})
    [out] = run(step, [row("a", prompt="hi", scores=[1])])
    assert out["_sp_status"] == "quarantined"
    assert out["_sp_reason"].startswith(f"filter rule 'rule': {reason}")


def test_keyword_and_regex_rules_ignore_case_unless_told_otherwise() -> None:
    rules = [{"name": "greeting", "column": "prompt", "matches": "^hi\\b"}]
    strict = [{**rules[0], "ignore_case": False}]
    rows = [row("a", prompt="Hi there"), row("b", prompt="hi there")]
    assert [r["_sp_status"] for r in run(make_step("filter", {"rules": rules}), rows)] == ["ok", "ok"]
    assert [r["_sp_status"] for r in run(make_step("filter", {"rules": strict}), rows)] == ["filtered", "ok"]
    words = [{"name": "polite", "column": "prompt", "contains_none": ["THERE"], "ignore_case": False}]
    assert [r["_sp_status"] for r in run(make_step("filter", {"rules": words}), rows)] == ["ok", "ok"]


def test_judge_params_that_another_answer_kind_would_read_are_refused() -> None:
    from pydantic import ValidationError

    label = {"template": "t.jinja", "answer": "label", "criteria": ["v"], "labels": ["safe", "unsafe"]}
    with pytest.raises(ValidationError, match="`scale` applies to answer score, not label"):
        StageSpec(name="j", step="llm.judge", backend="b", params={**label, "scale": [1, 5]})
    json_verdict = {"template": "t.jinja", "answer": "json", "fields": {"ok": {"type": "boolean"}}}
    with pytest.raises(ValidationError, match="`labels` apply to answer label, not json"):
        StageSpec(name="j", step="llm.judge", backend="b", params={**json_verdict, "labels": ["a"]})
    scored = StageSpec(
        name="j", step="llm.judge", backend="b", params={"template": "t.jinja", "criteria": ["c"]}
    )
    assert scored.params["scale"] is None  # the default [1, 10], as the summary says
    assert "scores on [1, 10]" in STEP_PARAMS["llm.judge"].model_validate(scored.params).summary()


def test_an_expression_may_call_what_reads_text_lists_and_numbers() -> None:
    rules = [
        {"name": "short", "expression": "prompt.lower().split() | length <= 3 and prompt.strip() != ''"},
        {"name": "scored", "expression": "scores | sum >= 3 and sum(scores) % 2 == 1 and max(scores) < 3"},
    ]
    out = run(make_step("filter", {"rules": rules}), [row("a", prompt="Hi there", scores=[1, 2])])
    assert [(r["_sp_status"], r["_sp_reason"]) for r in out] == [("ok", None)]


def test_an_expression_naming_a_filter_the_sandbox_lacks_is_a_recipe_error(tmp_path: Path) -> None:
    """`center`, `indent`, `format`, `join`, `replace`, `batch`, ... take a size or a text to repeat."""
    from factory.engine.intake import read_rows
    from factory.engine.recipe import load_recipe

    path = filter_recipe(tmp_path, '"a" | center(10 ** 9) | length > 0')
    with pytest.raises(
        UserError, match="stages\\[keep\\].params: expression .*No filter named 'center'"
    ) as err:
        read_rows(load_recipe(str(path)), allow_import_steps=False)
    assert "\n" not in str(err.value)


def filter_recipe(tmp_path: Path, expression: str, source: str = '{"prompt": "hi"}\n') -> Path:
    (tmp_path / "rows.jsonl").write_text(source)
    recipe = {
        "name": "f",
        "license": "apache-2.0",
        "source": {"kind": "file", "path": str(tmp_path / "rows.jsonl")},
        "stages": [
            {"name": "keep", "step": "filter", "params": {"rules": [{"name": "r", "expression": expression}]}}
        ],
        "outputs": [{"config": "rows", "exporter": "generate.responses"}],
        "card": {"pretty_name": "f"},
    }
    path = tmp_path / "f.yaml"
    path.write_text(json.dumps(recipe))
    return path


def test_the_source_must_provide_the_columns_a_rule_or_expression_reads(tmp_path: Path) -> None:
    from factory.engine.intake import read_rows
    from factory.engine.recipe import load_recipe

    source = tmp_path / "rows.jsonl"
    source.write_text('{"prompt": "hi"}\n')
    recipe = {
        "name": "f",
        "license": "apache-2.0",
        "source": {"kind": "file", "path": str(source)},
        "stages": [
            {
                "name": "keep",
                "step": "filter",
                "params": {"rules": [{"name": "r", "expression": "len(respones) > 1"}]},
            }
        ],
        "outputs": [{"config": "rows", "exporter": "generate.responses"}],
        "card": {"pretty_name": "f"},
    }
    path = tmp_path / "f.yaml"
    path.write_text(json.dumps(recipe))
    with pytest.raises(UserError, match="source has no column 'respones' \\(needed by stage 'keep'\\)"):
        read_rows(load_recipe(str(path)), allow_import_steps=False)


# -- rank --------------------------------------------------------------------------------------


def test_rank_orders_by_weighted_scores_keeps_ties_stable_and_drops_duplicates() -> None:
    step = make_step("rank", {"column": "responses", "by": {"harm": 2.0, "help": 1.0}})
    rows = [
        row("a", responses=["w", "x", "y", " x "], harm=[1, 5, 5, 5], help=[9, 1, 1, 9]),
        row("b", responses=["s", "s"], harm=[1, 1], help=[1, 1]),
        row("c", responses=["s", "t"], harm=[1], help=[1, 1]),
    ]
    ranked, single, broken = run(step, rows)
    # " x " (2*5+9 = 19) first, then the 11s in list order: w, x (a duplicate of " x ": dropped), y
    assert ranked["ranked"] == [" x ", "w", "y"] and ranked["ranked_scores"] == [19.0, 11.0, 11.0]
    assert json.loads(ranked["_sp_usage"])["stage"]["events"] == {"duplicates_dropped": 1}
    assert (single["_sp_status"], single["_sp_reason"]) == ("filtered", "fewer_than_2_items")
    assert (
        broken["_sp_status"] == "quarantined"
        and "score column 'harm' holds 1 scores for 2 items" in broken["_sp_reason"]
    )


def test_rank_ascending_writes_scores_where_higher_is_better() -> None:
    """`descending: false` ranks the lowest cost first, and its scores are negated so that what every
    reader of a ranking assumes (higher is better) holds: the exported chosen is the cheapest answer."""
    from factory.export.base import ExportContext, exporter_function
    from schemas.registry import EXPORTER_PARAMS

    step = make_step(
        "rank", {"column": "xs", "by": "cost", "descending": False, "into": "cheap", "scores_into": "costs"}
    )
    [out] = run(step, [row("a", prompt="p", xs=["a", "b", "c", "d"], cost=[3, 1, 2, 0])])
    assert (out["cheap"], out["costs"]) == (["d", "b", "c", "a"], [0.0, -1.0, -2.0, -3.0])
    assert str(out["costs"][0]) == "0.0"  # not -0.0
    params = {"responses_column": "cheap", "scores_column": "costs", "min_margin": 3}
    ctx = ExportContext("r", "0" * 64, 1, params=EXPORTER_PARAMS["pairs"].model_validate(params))
    [pair] = exporter_function("pairs")(out, ctx)
    assert (pair.chosen, pair.rejected) == ("d", "a")  # the lowest raw cost is chosen


# -- params: one-line errors naming the recipe field, JSON Schema, plan ------------------------------


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("stages.judge.params.answer=json", "stages[judge].params: answer json needs `fields`"),
        ("stages.judge.params.scale=[10, 1]", "stages[judge].params: scale [10, 1] must go from low to high"),
        (
            "stages.respond.params.output_column=_sp_x",
            "stages[respond].params.output_column: column '_sp_x': names starting with _sp_",
        ),
        (
            "stages.margin.params.rules.0.expression=ranked_scores[0] -",
            "stages[margin].params.rules.0: expression",
        ),
        (
            "stages.margin.params.rules.0.expression=ranked_scores[0] ranked_scores[1]",
            "stages[margin].params.rules.0: expression 'ranked_scores[0] ranked_scores[1]': chunk after",
        ),
        ("stages.margin.params.rules.0.matches=(", "a rule sets exactly one of"),
        # set but never read: refused rather than ignored
        (
            "stages.margin.params.rules.0.ignore_case=false",
            "stages[margin].params.rules.0: ignore_case applies to keyword and regex rules, not expression",
        ),
        (
            "stages.judge.params.labels=[safe]",
            "stages[judge].params: `labels` apply to answer label, not score",
        ),
        (
            "stages.judge.params.answer=label",  # with the recipe's scale
            "stages[judge].params: answer label needs `labels`",
        ),
        ("stages.rank.params.into=responses", "stages[rank].params: 'responses' is read and written"),
        (
            "outputs.pairs.params.pairing=random",
            "outputs[pairs].params.pairing: Input should be 'best_vs_worst' or 'all'",
        ),
        ("outputs.pairs.params.margin=1", "outputs[pairs].params.margin: unknown field"),
    ],
)
def test_bad_generic_params_are_one_line_naming_the_recipe_field(override: str, message: str) -> None:
    from factory.engine.recipe import load_recipe

    with pytest.raises(UserError) as err:
        load_recipe("safe-completion-demo", [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_exporter_without_params_refuses_them() -> None:
    from factory.engine.recipe import load_recipe

    with pytest.raises(UserError, match=r"outputs\[pairs\].params: exporter 'c2syn.pairs' takes no params"):
        load_recipe("safe-completion-demo", ["outputs.pairs.exporter=c2syn.pairs"])


def test_schema_command_prints_a_steps_and_an_exporters_params() -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    def schema(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "factory", "schema", name],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )

    judge = json.loads(schema("step:llm.judge").stdout)
    assert {"template", "each", "criteria", "scale", "answer"} <= set(judge["properties"])
    pairs = json.loads(schema("exporter:pairs_conversational").stdout)
    assert pairs["properties"]["pairing"]["enum"] == ["best_vs_worst", "all"]
    listed = schema("list").stdout.split()
    assert {"step:filter", "step:rank", "step:llm.generate", "exporter:kto", "sft_row"} <= set(listed)


def test_plan_counts_the_judge_per_sample_and_criterion() -> None:
    from factory.engine.plan import plan_recipe
    from factory.engine.recipe import load_recipe

    plan = {s.name: s.calls for s in plan_recipe(load_recipe("safe-completion-demo")).stages}
    assert plan == {"respond": 6 * 4, "judge": 6 * 4 * 2, "rank": 0, "margin": 0}


def test_the_authoring_guides_recipe_validates_and_plans_as_the_guide_says(tmp_path: Path) -> None:
    """docs/authoring.md's code blocks, assembled into the folder it describes, are a valid recipe."""
    import re

    from factory.engine.intake import read_rows
    from factory.engine.plan import plan_recipe
    from factory.engine.preflight import preflight
    from factory.engine.recipe import load_recipe
    from tests.conftest import REPO

    blocks = re.findall(r"```(\w+)\n(.*?)```", (REPO / "docs" / "authoring.md").read_text(), re.S)
    recipe = "".join(text for kind, text in blocks if kind == "yaml")
    respond, judge = (text for kind, text in blocks if kind == "jinja")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "respond.jinja").write_text(respond)
    (tmp_path / "templates" / "judge.jinja").write_text(judge)
    (tmp_path / "prompts.jsonl").write_text(next(text for kind, text in blocks if kind == "json"))
    (tmp_path / "safe-completion.yaml").write_text(recipe)
    loaded = load_recipe(str(tmp_path / "safe-completion.yaml"))
    preflight(loaded)
    read_rows(loaded, allow_import_steps=False)
    plan = {s.name: s.calls for s in plan_recipe(loaded).stages}
    assert plan == {"respond": 12, "judge": 24, "rank": 0, "margin": 0}  # the figures the guide gives
    shipped = REPO / "recipes" / "templates" / "safe_completion"  # the guide shows the built-in templates
    for name, text in (("respond.jinja", respond), ("judge.jinja", judge)):
        without_comment = re.sub(r"\{#-.*?-#\}\n", "", (shipped / name).read_text(), flags=re.S)
        assert without_comment.strip() == text.strip(), name


# -- the recipe's columns, checked before any LLM work (factory/engine/column_flow.py) ---------------


def demo_like(tmp_path: Path, rows: list[dict[str, Any]], templates: dict[str, str] | None = None) -> Path:
    """The safe-completion-demo recipe with its own source rows and templates, in `tmp_path`."""
    import yaml

    from tests.conftest import REPO

    recipe = yaml.safe_load((REPO / "recipes" / "safe-completion-demo.yaml").read_text())
    recipe["source"] = {"kind": "file", "path": "rows.jsonl", "id_field": "id"}
    (tmp_path / "rows.jsonl").write_text(
        "".join(json.dumps({"id": str(i), **r}) + "\n" for i, r in enumerate(rows))
    )
    for name, text in (templates or {}).items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps(recipe))
    return path


def recipe_error(path: Path, *overrides: str) -> str:
    """The one line `validate` (and `run`, before any model loads) stops with."""
    from factory.engine.intake import read_rows
    from factory.engine.recipe import load_recipe

    with pytest.raises(UserError) as err:
        read_rows(load_recipe(str(path), list(overrides)), allow_import_steps=False)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_a_misspelled_template_variable_stops_validate_naming_the_stage(tmp_path: Path) -> None:
    path = demo_like(tmp_path, [{"prompt": "hi"}], {"ask.jinja": "Answer: {{ promt }}"})
    message = recipe_error(path, "stages.respond.params.template=ask.jinja")
    assert "source has no column 'promt' (needed by stage 'respond')" in message
    judge = "{{ prompt }} / {{ item }} / {{ criterion }} / {{ answr }}"  # item, criterion: the judge's own
    path = demo_like(tmp_path, [{"prompt": "hi"}], {"judge.jinja": judge})
    message = recipe_error(path, "stages.judge.params.template=judge.jinja")
    assert "source has no column 'answr' (needed by stage 'judge')" in message


def test_a_null_in_a_column_a_template_reads_is_quarantined_at_intake(tmp_path: Path) -> None:
    from factory.engine.intake import read_rows
    from factory.engine.recipe import load_recipe

    path = demo_like(tmp_path, [{"prompt": "hi"}, {"prompt": None}, {"prompt": "yo"}])
    rows, _ = read_rows(load_recipe(str(path)), allow_import_steps=False)
    assert [(r["_sp_status"], r["_sp_stage"], r["_sp_reason"]) for r in rows] == [
        ("ok", None, None),
        ("quarantined", "source", "row 1: column 'prompt' is null"),  # never rendered as "None"
        ("ok", None, None),
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (  # an exporter's column: checked now, not after every LLM call at export
            ["outputs.pairs.params.prompt_column=promt"],
            "source has no column 'promt' (needed by output 'pairs')",
        ),
        (
            ["outputs.pairs.exporter=generate.responses", "outputs.pairs.params={response_column: answer}"],
            "source has no column 'answer' (needed by output 'pairs')",
        ),
        (
            ["stages.judge.params.criteria=[prompt, helpfulness]"],
            "stages[judge]: writes column 'prompt', which the source provides; write to a new column",
        ),
        (
            ["stages.rank.params.into=harmlessness", "stages.rank.params.by=helpfulness"],
            "stages[rank]: writes column 'harmlessness', which stage 'judge' provides",
        ),
        (
            ["stages.respond.params.n=1"],
            "stages[judge].params.each: column 'responses' holds one value per row (stage 'respond' "
            "writes it so), not a list",
        ),
        (
            ["stages.rank.params.column=prompt", "stages.judge.params.each=prompt"],
            "stages[judge].params.each: column 'prompt' holds text in the source, not lists",
        ),
        (
            ["outputs.pairs.exporter=sft", "outputs.pairs.params={response_column: prompt, take: all}"],
            "outputs[pairs].params.take: column 'prompt' holds text in the source, not lists",
        ),
    ],
)
def test_column_mistakes_are_one_line_naming_the_stage_or_output(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    assert message in recipe_error(demo_like(tmp_path, [{"prompt": "hi"}]), *overrides)


@pytest.mark.parametrize("column", ["item", "index", "criterion"])
def test_a_column_named_like_a_judge_variable_is_refused(tmp_path: Path, column: str) -> None:
    """The judge gives its template `item`, `index` and `criterion`: a column of that name could never
    be read there, so it is refused, not silently shadowed."""
    message = recipe_error(demo_like(tmp_path, [{"prompt": "hi", column: "x"}]))
    assert f"stages[judge]: column {column!r} (from the source) has the name of a variable" in message


def test_stage_to_stage_column_checks_run_without_the_source() -> None:
    """A Hub source is only read by `run`; `validate` still checks what the stages do to each other."""
    from factory.engine.column_flow import column_flow
    from factory.engine.recipe import load_recipe

    loaded = load_recipe("safe-completion", ["stages.respond.params.output_column=harmlessness"])
    with pytest.raises(
        UserError, match="stages\\[judge\\]: writes column 'harmlessness', which stage 'respond'"
    ):
        column_flow(loaded, allow_import_steps=False, source=None)
    needed = column_flow(load_recipe("safe-completion"), allow_import_steps=False, source=None)
    assert needed == {"prompt": "stage 'respond'"}


def test_a_template_edited_between_two_runs_of_one_process_is_read_again(tmp_path: Path) -> None:
    """The Python API runs recipes in a long-lived process (a notebook): the columns a template reads
    follow its file, not what an earlier load saw."""
    from factory.steps.llm import LLMGenerate

    params = {"template": "ask.jinja", "output_column": "out"}
    (tmp_path / "ask.jinja").write_text("{{ prompt }}")
    assert LLMGenerate.columns(params, str(tmp_path)) == (("prompt",), ("out",))
    (tmp_path / "ask.jinja").write_text("{{ question }} ({{ topic }})")
    assert LLMGenerate.columns(params, str(tmp_path)) == (("question", "topic"), ("out",))
