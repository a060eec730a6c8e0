"""Generic LLM steps a recipe composes in YAML: `llm.generate` and `llm.judge` (schemas/generic_params.py).

Prompts are Jinja2 templates rendered in the sandbox with the row's columns. A request that failed,
and an answer with no text ("empty completion"), quarantine the row with the raw output: an empty
answer is neither a generation nor a verdict. So does a judge answer that does not parse: it is
never guessed at, and never stored as None.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PrivateAttr, ValidationError

from factory.core.config_files import format_validation_error
from factory.core.rows import own_columns
from factory.core.seeds import seed_for
from factory.steps.base import ROW_ID, RowFailed, SafeprefStep, add_usage, answer_text
from schemas.generic_params import JudgeField, LLMJudgeParams

if TYPE_CHECKING:
    from factory.backends import ChatRequest, Completion
    from schemas.generation import GenerationParams

Row = dict[str, Any]


def template_reads(template: str, template_dir: str | None, own: list[str] | None = None) -> tuple[str, ...]:
    """The columns a prompt template reads: its variables but those the step provides itself (`own`)."""
    from factory.core.templates import template_variables

    return tuple(sorted(template_variables(template, template_dir) - set(own or ())))


class LLMStep(SafeprefStep):
    """Messages from the stage's template and a seed per request when the stage samples."""

    def messages(self, user: str, prefill: str | None = None) -> list[dict[str, str]]:
        system = self.params.get("system_prompt")
        head = [{"role": "system", "content": system}] if system else []
        tail = [{"role": "assistant", "content": prefill}] if prefill else []
        return [*head, {"role": "user", "content": user}, *tail]

    def request(self, messages: list[dict[str, str]], params: GenerationParams, *tag: object) -> ChatRequest:
        """A request; when the stage samples, seeded from the recipe (or decoding) seed, the stage and
        `tag` (row id, sample, ...), so samples differ from each other and a re-run asks the same."""
        from factory.backends import ChatRequest

        if params.temperature > 0:
            base = params.seed if params.seed is not None else self.seed
            params = params.model_copy(update={"seed": seed_for(base, self.stage, *tag)})
        return ChatRequest(messages=messages, params=params)

    def ask(self, calls: list[tuple[Row, ChatRequest]]) -> list[Completion]:
        """One generate() for every call; usage is recorded on each call's row."""
        completions = self.backend.generate([r for _, r in calls]) if calls else []
        for (row, _), c in zip(calls, completions, strict=True):
            add_usage(row, self.stage, [c])
        return completions


class LLMGenerate(LLMStep):
    """`llm.generate` (and `generate.respond`): a template or a column -> `output_column`, n samples.

    n = 1 stores the answer's text, n > 1 a list of n texts (one seeded request each).
    """

    @classmethod
    def columns(
        cls, params: dict[str, Any], template_dir: str | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        template = params.get("template")
        reads = template_reads(template, template_dir) if template else (params["input_column"],)
        return reads, (params["output_column"],)

    def process_rows(self, rows: list[Row]) -> None:
        n = int(self.params.get("n") or 1)  # n > 1 samples (the recipe refuses greedy ones at load)
        decoding = self.decoding()
        calls: list[tuple[Row, ChatRequest]] = []
        for row in rows:
            prompt: list[str] = []
            self.guarded(row, self._prompt, prompt)
            if prompt:
                calls += [
                    (row, self.request(self.messages(prompt[0]), decoding, row[ROW_ID], i)) for i in range(n)
                ]
        completions = iter(self.ask(calls))
        for row in {id(r): r for r, _ in calls}.values():
            self.guarded(row, self._store, [next(completions) for _ in range(n)], n)

    def _prompt(self, row: Row, out: list[str]) -> None:
        template = self.params.get("template")
        out.append(
            self.render(template, own_columns(row)) if template else str(row[self.params["input_column"]])
        )

    def _store(self, row: Row, completions: list[Completion], n: int) -> None:
        texts = [answer_text(c, "generation").strip() for c in completions]
        row[self.params["output_column"]] = texts if n > 1 else texts[0]


# -- llm.judge -------------------------------------------------------------------------------------

_LEADING_NUMBER = re.compile(r"^\s*(?:score\s*)?[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_FIRST_WORD = re.compile(r"^\s*[*\"'(\[]*\s*([^\s*\"'.,:;!?)\]]+)")


def parse_score(text: str, low: float, high: float) -> float:
    """`' 8 out of 10'` -> 8.0: the answer must start with a number (after an optional 'Score:') on
    [low, high]; ValueError otherwise."""
    match = _LEADING_NUMBER.match(text)
    if match is None:
        raise ValueError("does not start with a number")
    value = float(match.group(1))
    if not low <= value <= high:
        raise ValueError(f"{value:g} is outside the scale [{low:g}, {high:g}]")
    return value


def parse_label(text: str, labels: list[str]) -> str:
    """The label the answer's first word names (case-insensitive), as the recipe spells it."""
    match = _FIRST_WORD.match(text)
    word = match.group(1).lower() if match else ""
    for label in labels:
        if word == label.lower():
            return label
    raise ValueError(f"first word {word!r} is none of {', '.join(labels)}")


def verdict_model(fields: dict[str, JudgeField]) -> type[BaseModel]:
    """A pydantic model of the JSON verdict: each field typed and bounded; other keys are ignored."""
    from typing import Annotated, Literal

    from pydantic import ConfigDict, Field, StrictBool, StrictStr, create_model

    definitions: dict[str, Any] = {}
    for name, spec in fields.items():
        kind: Any
        if spec.type in ("number", "integer"):
            base = float if spec.type == "number" else int
            kind = Annotated[base, Field(ge=spec.min, le=spec.max, strict=spec.type == "integer")]
        elif spec.type == "boolean":
            kind = StrictBool
        else:
            kind = Literal[tuple(spec.choices)] if spec.choices else StrictStr  # type: ignore[misc]
        definitions[name] = (kind, ...)
    return create_model("Verdict", __config__=ConfigDict(extra="ignore"), **definitions)


def parse_verdict(text: str, model: type[BaseModel]) -> dict[str, Any]:
    """The first JSON object in the answer (code fences allowed), validated by `model`."""
    start = text.find("{")
    if start < 0:
        raise ValueError("holds no JSON object")
    try:
        data, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg}") from None
    try:
        return model.model_validate(data).model_dump()
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None


class LLMJudge(LLMStep):
    """`llm.judge`: one request per row (or per item of `each`) and criterion; answers parsed into columns."""

    _spec: LLMJudgeParams | None = PrivateAttr(default=None)
    _verdict: type[BaseModel] | None = PrivateAttr(default=None)

    @classmethod
    def columns(
        cls, params: dict[str, Any], template_dir: str | None = None
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        spec = LLMJudgeParams.model_validate(params)
        each = (spec.each,) if spec.each else ()
        reads = (*each, *template_reads(spec.template, template_dir, spec.template_variables()))
        return tuple(dict.fromkeys(reads)), tuple(spec.output_columns())

    @property
    def spec(self) -> LLMJudgeParams:
        if self._spec is None:
            self._spec = LLMJudgeParams.model_validate(self.params)
            if self._spec.answer == "json":
                self._verdict = verdict_model(self._spec.fields)
        return self._spec

    def process_rows(self, rows: list[Row]) -> None:
        decoding = self.decoding()
        planned: list[tuple[Row, list[tuple[int, str | None]]]] = []
        calls: list[tuple[Row, ChatRequest]] = []
        for row in rows:
            keys: list[tuple[int, str | None]] = []
            requests: list[ChatRequest] = []
            self.guarded(row, self._requests, decoding, keys, requests)
            if row["_sp_status"] == "ok":
                planned.append((row, keys))
                calls += [(row, r) for r in requests]
        completions = iter(self.ask(calls))
        for row, keys in planned:
            answers = [next(completions) for _ in keys]
            self.guarded(row, self._store, keys, answers)

    def _items(self, row: Row) -> list[Any]:
        each = self.spec.each
        if each is None:
            return [None]
        items = row[each]
        if not isinstance(items, list):
            raise RowFailed(f"column {each!r} holds {type(items).__name__}, not a list to judge item by item")
        return items

    def _requests(
        self, row: Row, decoding: GenerationParams, keys: list[tuple[int, str | None]], out: list[ChatRequest]
    ) -> None:
        spec = self.spec
        context = own_columns(row)
        criteria: list[str | None] = [*spec.criteria] or [None]  # json: one request, no criterion
        for index, item in enumerate(self._items(row)):
            for criterion in criteria:
                # the judge's own variables (`template_variables`) only where it has them: a column of
                # that name is a recipe error (factory/engine/column_flow.py), never silently shadowed
                own = {"item": item, "index": index} if spec.each else {}
                if criterion is not None:
                    own["criterion"] = criterion
                user = self.render(spec.template, {**context, **own})
                messages = self.messages(user, spec.assistant_prefill)
                out.append(self.request(messages, decoding, row[ROW_ID], index, criterion))
                keys.append((index, criterion))

    def _store(self, row: Row, keys: list[tuple[int, str | None]], answers: list[Completion]) -> None:
        spec = self.spec
        n_items = len(self._items(row))
        values: dict[str, list[Any]] = {c: [None] * n_items for c in spec.output_columns()}
        for (index, criterion), completion in zip(keys, answers, strict=True):
            where = " ".join(
                x
                for x in (f"for {criterion!r}" if criterion else "", f"(item {index})" if spec.each else "")
                if x
            )
            what = f"judge answer {where}".strip()
            text = answer_text(completion, what)
            try:  # the model's own text: the prefill ("Score:", "Verdict:") is not part of the answer
                parsed = self._parse(text, criterion)
            except ValueError as exc:  # kept as the judge saw it: the prefill, then its text
                raise RowFailed(f"{what}: {exc}", f"{spec.assistant_prefill or ''}{text}") from None
            for column, value in parsed.items():
                values[column][index] = value
        for column, found in values.items():
            row[column] = found if spec.each else found[0]

    def _parse(self, text: str, criterion: str | None) -> dict[str, Any]:
        spec = self.spec
        if spec.answer == "score":
            assert criterion is not None
            return {criterion: parse_score(text, *spec.score_scale())}
        if spec.answer == "label":
            assert criterion is not None
            return {criterion: parse_label(text, spec.labels)}
        assert self._verdict is not None
        return parse_verdict(text, self._verdict)
