"""PT-ALIGN steps (Xu et al., arXiv 2502.08657): the model being aligned writes its own safety triples.

Stages (all counts, rounds, thresholds and templates are recipe values, `schemas/methods/ptalign.py`):
S3 refine_constraints (per domain row) -> S1 topics -> S2 instructions -> S4 positive -> S5 toxic ->
S6 refine (judge; critique -> revise for at most R rounds) -> S7 annotate_spans / diff_spans ->
S8 assemble. Constraints and demonstrations appear only in generation prompts; the exported training
rows hold the plain instruction.

Structured columns (constraint sets, scores, spans, the refine log, the triple) are JSON strings, so
the Arrow schema of the intermediate rows never depends on which rows happen to be empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import PrivateAttr

from factory.core.seeds import row_request_seed
from factory.steps.base import RowFailed, RowFiltered, SafeprefStep, add_usage, answer_text, child_row, mark
from factory.steps.ptalign.hashes import constraints_version
from factory.steps.ptalign.judge import JudgeAnswerError, parse_judge_score
from factory.steps.ptalign.lists import Deduper, dedup_key, parse_list_items
from factory.steps.ptalign.spans import diff_spans, locate_quotes, parse_quotes, validate_spans

if TYPE_CHECKING:
    from factory.backends import ChatRequest, Completion
    from schemas.generation import GenerationParams

Row = dict[str, Any]
SIDES = ("positive", "toxic")


def with_prefill(prefill: str | None, text: str) -> str:
    """The whole answer of a prefilled turn: the prefill followed by the model's continuation."""
    return f"{prefill}{text}" if prefill else text


def checked_text(completion: Completion, prefill: str | None = None) -> str:
    """The whole answer text, or RowFailed when the request failed or the answer is empty."""
    return with_prefill(prefill, answer_text(completion))


def select_demonstrations(demos: list[dict[str, Any]], domain_id: str | None, k: int) -> list[dict[str, Any]]:
    """At most `k` demonstrations: those of the row's domain first, then the domain-free ones."""
    own = [d for d in demos if d.get("domain") == domain_id]
    shared = [d for d in demos if d.get("domain") is None]
    return (own + shared)[:k]


class PTAlignLLMStep(SafeprefStep):
    """Shared LLM plumbing: decoding per stage, per-request seeds, one batched generate per call kind."""

    def ask(
        self,
        calls: list[tuple[Row, str, str, dict[str, Any]]],
        *,
        prefill: str | None = None,
        decoding: GenerationParams | None = None,
    ) -> list[Completion]:
        """One generate() for `calls` = [(row, tag, template, context)]; usage is recorded per row."""
        from factory.backends import ChatRequest

        params = decoding or self.decoding()
        requests: list[ChatRequest] = []
        for row, tag, template, context in calls:
            messages = [{"role": "user", "content": self.render(template, context)}]
            if prefill:
                messages.append({"role": "assistant", "content": prefill})
            p = params
            if params.temperature > 0:
                p = params.model_copy(
                    update={"seed": row_request_seed("ptalign", self.seed, self.stage, row["_sp_id"], tag)}
                )
            requests.append(ChatRequest(messages=messages, params=p))
        completions = self.backend.generate(requests) if requests else []
        for (row, *_), c in zip(calls, completions, strict=True):
            add_usage(row, self.stage, [c])
        return completions


# -- S3 ------------------------------------------------------------------------------------------


class PTRefineConstraints(PTAlignLLMStep):
    """Rewrites the seed's positive and toxic constraints for the row's domain, for `rounds` rounds."""

    required: ClassVar[tuple[str, ...]] = (
        "domain",
        "domain_description",
        "positive_constraints",
        "toxic_constraints",
        "source_sha256",
    )
    produced: ClassVar[tuple[str, ...]] = (
        "refined_positive_constraints",
        "refined_toxic_constraints",
        "constraints_version",
    )

    def process_rows(self, rows: list[Row]) -> None:
        p = self.params
        current = {id(r): {s: list(r[f"{s}_constraints"]) for s in SIDES} for r in rows}
        active = list(rows)
        for round_no in range(p["rounds"]):
            calls = [
                (
                    row,
                    f"{side}:{round_no}",
                    p["template"],
                    {
                        "domain": row["domain"],
                        "domain_description": row["domain_description"],
                        "kind": side,
                        "constraints": current[id(row)][side],
                        "max_constraints": p["max_constraints"],
                    },
                )
                for row in active
                for side in SIDES
            ]
            completions = self.ask(calls, prefill=p["assistant_prefill"])
            for i, row in enumerate(active):
                self.guarded(row, self._revise, current[id(row)], completions[2 * i : 2 * i + 2])
            active = [r for r in active if r["_sp_status"] == "ok"]
        for row in active:
            sets = current[id(row)]
            row["refined_positive_constraints"] = json.dumps(sets["positive"], ensure_ascii=False)
            row["refined_toxic_constraints"] = json.dumps(sets["toxic"], ensure_ascii=False)
            row["constraints_version"] = constraints_version(
                row["source_sha256"], sets["positive"], sets["toxic"]
            )

    def _revise(self, row: Row, sets: dict[str, list[str]], completions: list[Completion]) -> None:
        p = self.params
        for side, c in zip(SIDES, completions, strict=True):
            proposed = parse_list_items(
                checked_text(c, p["assistant_prefill"]),
                max_items=p["max_constraints"],
                min_chars=p["min_chars"],
                max_chars=p["max_chars"],
                truncated=c.finish_reason == "length",
            )
            base = list(row[f"{side}_constraints"]) if p["keep_seed"] else []
            dedup = Deduper()
            merged = [x for x in base + proposed if not dedup.is_duplicate(x)]
            merged = merged[: max(p["max_constraints"], len(base))]
            if not merged:
                raise RowFailed(
                    f"no {side} constraints in the answer", with_prefill(p["assistant_prefill"], c.text)
                )
            sets[side] = merged


# -- S1, S2 --------------------------------------------------------------------------------------


class PTListExpansion(PTAlignLLMStep):
    """One row -> up to `n` children, one per listed item; repeats are kept as filtered children."""

    expands: ClassVar[bool] = True
    column: ClassVar[str]
    duplicate_rule: ClassVar[str]
    # one process runs a stage's batches in order, so this sees every earlier item of the stage
    _dedupers: dict[str, Deduper] = PrivateAttr(default_factory=dict)

    def context(self, row: Row) -> dict[str, Any]:
        raise NotImplementedError

    def dedup_scope(self, row: Row) -> str:
        """Items are unique within a scope (one Deduper per scope, kept across the stage's batches)."""
        raise NotImplementedError

    def process_rows(self, rows: list[Row]) -> list[Row]:
        p = self.params
        calls = [(row, "list", p["template"], {**self.context(row), "n": p["n"]}) for row in rows]
        completions = self.ask(calls, prefill=p["assistant_prefill"])
        out: list[Row] = []
        for row, c in zip(rows, completions, strict=True):
            items: list[str] = []
            self.guarded(row, self._items, c, items)
            if row["_sp_status"] != "ok":
                out.append(row)
                continue
            scope = self.dedup_scope(row)
            dedup = self._dedupers.setdefault(scope, Deduper(near_jaccard=p["near_duplicate_jaccard"]))
            for i, item in enumerate(items):
                child = child_row(row, i, **{self.column: item})
                if dedup.is_duplicate(item):
                    mark(child, "filtered", self.stage, self.duplicate_rule)
                out.append(child)
        return out

    def _items(self, row: Row, completion: Completion, items: list[str]) -> None:
        p = self.params
        text = checked_text(completion, p["assistant_prefill"])
        items += parse_list_items(
            text,
            max_items=p["n"],
            min_chars=p["min_chars"],
            max_chars=p["max_chars"],
            truncated=completion.finish_reason == "length",
        )
        if not items:
            raise RowFailed(f"no {self.column} in the answer", text)


class PTTopics(PTListExpansion):
    """S1: domain -> topics (unique within the domain)."""

    required: ClassVar[tuple[str, ...]] = ("domain", "domain_description")
    produced: ClassVar[tuple[str, ...]] = ("topic",)
    column: ClassVar[str] = "topic"
    duplicate_rule: ClassVar[str] = "duplicate_topic"

    def context(self, row: Row) -> dict[str, Any]:
        return {"domain": row["domain"], "domain_description": row["domain_description"]}

    def dedup_scope(self, row: Row) -> str:
        return str(row["domain"])


class PTInstructions(PTListExpansion):
    """S2: topic -> red-team instructions (unique across the whole stage)."""

    required: ClassVar[tuple[str, ...]] = ("domain", "topic")
    produced: ClassVar[tuple[str, ...]] = ("instruction",)
    column: ClassVar[str] = "instruction"
    duplicate_rule: ClassVar[str] = "duplicate_instruction"

    def context(self, row: Row) -> dict[str, Any]:
        return {"domain": row["domain"], "topic": row["topic"]}

    def dedup_scope(self, row: Row) -> str:
        return ""


# -- S4, S5 --------------------------------------------------------------------------------------


class PTResponse(PTAlignLLMStep):
    """Answers the instruction under the side's refined constraints and demonstrations."""

    side: ClassVar[str]

    def process_rows(self, rows: list[Row]) -> None:
        p = self.params
        calls = []
        for row in rows:
            demos = select_demonstrations(
                list(row.get("demonstrations") or []), row.get("domain_id"), p["demonstrations"]
            )
            calls.append(
                (
                    row,
                    self.side,
                    p["template"],
                    {
                        "domain": row["domain"],
                        "topic": row["topic"],
                        "instruction": row["instruction"],
                        "constraints": json.loads(row[f"refined_{self.side}_constraints"]),
                        "demonstrations": [
                            {"instruction": d["instruction"], "response": d[self.side]} for d in demos
                        ],
                    },
                )
            )
        for row, c in zip(rows, self.ask(calls, prefill=p["assistant_prefill"]), strict=True):
            self.guarded(row, self._store, c)

    def _store(self, row: Row, completion: Completion) -> None:
        text = checked_text(completion, self.params["assistant_prefill"]).strip()
        if len(text) < self.params["min_chars"]:
            raise RowFiltered(f"short_{self.side}")
        row[self.side] = text


class PTPositive(PTResponse):
    """S4: the harmless, helpful response."""

    required: ClassVar[tuple[str, ...]] = ("domain", "topic", "instruction", "refined_positive_constraints")
    produced: ClassVar[tuple[str, ...]] = ("positive",)
    side: ClassVar[str] = "positive"


class PTToxic(PTResponse):
    """S5: the harmful response; one identical to the positive one is filtered."""

    required: ClassVar[tuple[str, ...]] = (
        "domain",
        "topic",
        "instruction",
        "refined_toxic_constraints",
        "positive",
    )
    produced: ClassVar[tuple[str, ...]] = ("toxic",)
    side: ClassVar[str] = "toxic"

    def _store(self, row: Row, completion: Completion) -> None:
        super()._store(row, completion)
        if dedup_key(row["toxic"]) == dedup_key(row["positive"]):
            raise RowFiltered("toxic_equals_positive")


# -- S6 ------------------------------------------------------------------------------------------


@dataclass
class RevisionJob:
    """One side of one row to critique and revise in this round."""

    row: Row
    side: str
    context: dict[str, Any]
    tag: str = field(init=False)

    def __post_init__(self) -> None:
        self.tag = f"{self.row['rounds']}:{self.side}"


class PTRefine(PTAlignLLMStep):
    """Judge the pair; while a criterion fails, critique -> revise the failing side, at most `rounds` times.

    A judge answer that is not a score on the scale quarantines the row with the judge's raw text.
    `rounds` holds the critique/revise rounds a row went through, `scores` the last judgement and
    `refine_log` every judgement and revision. With `stop_when_passing: false` both sides are revised
    in every one of the R rounds.
    """

    required: ClassVar[tuple[str, ...]] = (
        "instruction",
        "positive",
        "toxic",
        "refined_positive_constraints",
        "refined_toxic_constraints",
    )
    produced: ClassVar[tuple[str, ...]] = ("rounds", "scores", "refine_log")

    def process_rows(self, rows: list[Row]) -> None:
        p = self.params
        logs: dict[int, list[dict[str, Any]]] = {id(r): [] for r in rows}
        for row in rows:
            row["rounds"] = 0
        scores = self._judge(rows, logs)
        active = [r for r in rows if r["_sp_status"] == "ok"]
        while True:
            todo = [
                r
                for r in active
                if r["rounds"] < p["rounds"] and (not p["stop_when_passing"] or self._failing(scores[id(r)]))
            ]
            if not todo:
                break
            for row in todo:
                row["rounds"] += 1
            self._revise(todo, scores, logs)
            scores.update(self._judge([r for r in todo if r["_sp_status"] == "ok"], logs))
            active = [r for r in active if r["_sp_status"] == "ok"]
        for row in active:
            final = scores[id(row)]
            row["scores"] = json.dumps([{"name": k, "value": v} for k, v in final.items()])
            row["refine_log"] = json.dumps(logs[id(row)])
            if p["on_fail"] == "filter" and self._failing(final):
                mark(row, "filtered", self.stage, "below_threshold")

    def _failing(self, scores: dict[str, float]) -> list[dict[str, Any]]:
        """The criteria `scores` does not meet, each with its value."""
        return [
            {**c, "value": scores[c["name"]]}
            for c in self.params["criteria"]
            if scores[c["name"]] < c["min_score"]
        ]

    def _judge(self, rows: list[Row], logs: dict[int, list[dict[str, Any]]]) -> dict[int, dict[str, float]]:
        p = self.params
        criteria = p["criteria"]
        calls = [
            (
                row,
                f"judge:{row['rounds']}:{c['name']}",
                p["judge_template"],
                {
                    "instruction": row["instruction"],
                    "response": row[c["response"]],
                    "side": c["response"],
                    "criterion": c["name"],
                    "description": c["description"],
                    "scale_min": p["scale_min"],
                    "scale_max": p["scale_max"],
                },
            )
            for row in rows
            for c in criteria
        ]
        completions = self.ask(calls, prefill=p["judge_prefill"], decoding=self.decoding("judge_generation"))
        scores: dict[int, dict[str, float]] = {}
        n = len(criteria)
        for i, row in enumerate(rows):
            got: dict[str, float] = {}
            self.guarded(row, self._parse_scores, completions[i * n : (i + 1) * n], got)
            if row["_sp_status"] == "ok":
                scores[id(row)] = got
                logs[id(row)].append({"round": row["rounds"], "scores": got})
        return scores

    def _parse_scores(self, row: Row, completions: list[Completion], got: dict[str, float]) -> None:
        p = self.params
        for c, completion in zip(p["criteria"], completions, strict=True):
            if completion.error:
                raise RowFailed(f"judge request failed: {completion.error}", completion.raw)
            try:
                score = parse_judge_score(completion.text, c["name"], p["scale_min"], p["scale_max"])
            except JudgeAnswerError as exc:
                raise RowFailed(str(exc), with_prefill(p["judge_prefill"], completion.text)) from None
            got[c["name"]] = score.value

    def _revise(
        self, rows: list[Row], scores: dict[int, dict[str, float]], logs: dict[int, list[dict[str, Any]]]
    ) -> None:
        p = self.params
        jobs: list[RevisionJob] = []
        for row in rows:
            failing = self._failing(scores[id(row)])
            failing_sides = [s for s in SIDES if any(f["response"] == s for f in failing)]
            for side in failing_sides if p["stop_when_passing"] else SIDES:
                context = {
                    "instruction": row["instruction"],
                    "side": side,
                    "response": row[side],
                    "constraints": json.loads(row[f"refined_{side}_constraints"]),
                    "failing": [f for f in failing if f["response"] == side],
                }
                jobs.append(RevisionJob(row, side, context))
        critiques = self.ask([(j.row, f"critique:{j.tag}", p["critique_template"], j.context) for j in jobs])
        for job, c in zip(jobs, critiques, strict=True):
            self.guarded(job.row, self._keep_critique, job, c)
        jobs = [j for j in jobs if j.row["_sp_status"] == "ok"]
        revisions = self.ask([(j.row, f"revise:{j.tag}", p["revise_template"], j.context) for j in jobs])
        for job, c in zip(jobs, revisions, strict=True):
            self.guarded(job.row, self._apply_revision, job, c, logs[id(job.row)])

    def _keep_critique(self, row: Row, job: RevisionJob, completion: Completion) -> None:
        job.context["critique"] = checked_text(completion).strip()

    def _apply_revision(
        self, row: Row, job: RevisionJob, completion: Completion, log: list[dict[str, Any]]
    ) -> None:
        row[job.side] = checked_text(completion).strip()
        log.append({"round": row["rounds"], "revised": job.side, "critique": job.context["critique"]})


# -- S7 ------------------------------------------------------------------------------------------


def spans_json(spans: list[tuple[int, int]], label: str) -> str:
    return json.dumps([{"start": s, "end": e, "label": label} for s, e in spans])


class PTAnnotateSpans(PTAlignLLMStep):
    """The model quotes the harmful phrases of the toxic response; the quotes are located in the text."""

    required: ClassVar[tuple[str, ...]] = ("instruction", "positive", "toxic")
    produced: ClassVar[tuple[str, ...]] = ("toxic_spans",)

    def process_rows(self, rows: list[Row]) -> None:
        p = self.params
        calls = [
            (
                row,
                "spans",
                p["template"],
                {
                    "instruction": row["instruction"],
                    "positive": row["positive"],
                    "toxic": row["toxic"],
                    "max_spans": p["max_spans"],
                },
            )
            for row in rows
        ]
        for row, c in zip(rows, self.ask(calls, prefill=p["assistant_prefill"]), strict=True):
            self.guarded(row, self._store, c)

    def _store(self, row: Row, completion: Completion) -> None:
        p = self.params
        answer = checked_text(completion, p["assistant_prefill"])
        quotes = parse_quotes(answer, p["min_quote_chars"])
        spans = locate_quotes(row["toxic"], quotes)[: p["max_spans"]]
        if spans:
            row["toxic_spans"] = spans_json(spans, "quote")
        elif p["fallback"] == "diff":
            spans = diff_spans(row["toxic"], row["positive"], p["min_word_chars"])
            row["toxic_spans"] = spans_json(spans, "diff")
        else:
            row["toxic_spans"] = spans_json([], "quote")


class PTDiffSpans(SafeprefStep):
    """S7 without an LLM: spans of toxic words that the positive response does not use."""

    required: ClassVar[tuple[str, ...]] = ("positive", "toxic")
    produced: ClassVar[tuple[str, ...]] = ("toxic_spans",)

    def process_row(self, row: Row) -> None:
        row["toxic_spans"] = spans_json(
            diff_spans(row["toxic"], row["positive"], self.params["min_word_chars"]), "diff"
        )


# -- S8 ------------------------------------------------------------------------------------------


class PTAssemble(SafeprefStep):
    """Builds the triple the exporters publish; its spans are validated against the toxic text."""

    required: ClassVar[tuple[str, ...]] = (
        "domain",
        "topic",
        "instruction",
        "positive",
        "toxic",
        "toxic_spans",
        "rounds",
        "scores",
        "constraints_version",
    )
    produced: ClassVar[tuple[str, ...]] = ("triple",)

    def process_row(self, row: Row) -> None:
        row["triple"] = json.dumps(build_triple(row), ensure_ascii=False)


def build_triple(row: Row) -> dict[str, Any]:
    """The SafetyTriple fields except provenance (the exporter adds it from the run context).

    Spans are validated, not repaired: an annotation step (built-in or imported) that stored spans
    outside the text, unsorted or overlapping quarantines the row.
    """
    toxic = row["toxic"]
    raw_spans = json.loads(row["toxic_spans"])
    try:
        validate_spans([(s["start"], s["end"]) for s in raw_spans], toxic)
    except ValueError as exc:
        raise RowFailed(f"toxic_spans: {exc}", row["toxic_spans"]) from None
    if dedup_key(row["positive"]) == dedup_key(toxic):
        raise RowFiltered("toxic_equals_positive")
    return {
        "id": str(row["_sp_id"]),
        "domain": row["domain"],
        "topic": row["topic"],
        "instruction": row["instruction"],
        "positive": row["positive"],
        "toxic": toxic,
        "toxic_spans": [{"start": s["start"], "end": s["end"], "label": s.get("label")} for s in raw_spans],
        "rounds": int(row["rounds"]),
        "scores": json.loads(row["scores"]),
        "constraints_version": row["constraints_version"],
    }
