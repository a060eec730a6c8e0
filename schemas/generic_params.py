"""Parameters of the generic steps and exporters a recipe composes in YAML, with no method code.

Steps: `llm.generate` (a template -> a column, n samples per row), `llm.judge` (a template -> scores,
labels or a JSON verdict in columns), `filter` (keywords, regex, length, a sandboxed expression) and
`rank` (order a list column by scores). Exporters: preference pairs, SFT rows and KTO rows from a
ranked or scored list, each plain and conversational. `schemas/methods/generic.py` declares them with
their implementations; docs/authoring.md walks a recipe author through them.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas.columns import Column
from schemas.generation import DecodingOverride, GenerationParams
from schemas.step_params import ExporterParams, StepParams

_RULE_NAME = r"^[a-z0-9][a-z0-9_]*$"
_TEMPLATE = "Jinja2 template file (beside the recipe, else built in), rendered with the row's columns"


def _duplicates(names: list[str]) -> list[str]:
    return sorted({n for n in names if names.count(n) > 1})


# -- steps -----------------------------------------------------------------------------------------


class LLMGenerateParams(StepParams):
    """Generate with the LLM: a prompt template (or a column's text) -> an output column, `n` samples per row."""

    needs_llm: ClassVar[bool] = True
    writes_new_columns: ClassVar[bool] = True
    template: str | None = Field(None, description=f"{_TEMPLATE}: the user message")
    input_column: Column | None = Field(
        None, description="instead of a template: this column is the user message"
    )
    output_column: Column = Field(
        description="where the answer goes: its text for n = 1, a list of n texts for n > 1"
    )
    n: int = Field(
        1, ge=1, le=64, description="samples per row; n > 1 needs a sampling temperature (a seed per sample)"
    )
    system_prompt: str | None = Field(None, description="a system message before the user message")
    generation: DecodingOverride = Field(default_factory=DecodingOverride)

    @model_validator(mode="after")
    def _one_prompt(self) -> LLMGenerateParams:
        if (self.template is None) == (self.input_column is None):
            raise ValueError("set exactly one of `template` (a Jinja2 file) and `input_column`")
        if self.input_column == self.output_column:
            raise ValueError("output_column must differ from input_column")
        return self

    def llm_calls_per_row(self) -> float:
        return float(self.n)

    def decoding_problem(self, role: str, decoding: GenerationParams) -> tuple[str, str] | None:
        if self.n > 1 and decoding.temperature == 0:
            return "n", (
                f"{self.n} samples of greedy decoding (temperature 0) are all the same answer; set "
                "generation.temperature > 0 on the stage or its backend"
            )
        return None

    def list_lengths(self, known: dict[str, int]) -> dict[str, int]:
        return {self.output_column: self.n} if self.n > 1 else {}

    def value_columns(self) -> list[str]:
        return [self.output_column] if self.n == 1 else []

    def summary(self) -> str:
        prompt = f"template `{self.template}`" if self.template else f"the text of `{self.input_column}`"
        into = (
            f"{self.n} sampled answers per row in `{self.output_column}`"
            if self.n > 1
            else (f"one answer per row in `{self.output_column}`")
        )
        return f"LLM generation: {prompt} as the user message -> {into}"


class RespondParams(StepParams):
    """Answer one column with the LLM: [system?][user: row[input_column]] -> row[output_column]."""

    needs_llm: ClassVar[bool] = True
    writes_new_columns: ClassVar[bool] = True
    input_column: Column = "prompt"
    output_column: Column = "response"
    system_prompt: str | None = None
    generation: DecodingOverride = Field(default_factory=DecodingOverride)

    @model_validator(mode="after")
    def _distinct_columns(self) -> RespondParams:
        if self.input_column == self.output_column:
            raise ValueError("output_column must differ from input_column")
        return self

    def value_columns(self) -> list[str]:
        return [self.output_column]


class JudgeField(BaseModel):
    """One field of a JSON verdict: its type and the values it may take."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["number", "integer", "boolean", "string"]
    min: float | None = Field(None, description="number/integer: the lowest value allowed")
    max: float | None = Field(None, description="number/integer: the highest value allowed")
    choices: list[str] | None = Field(None, min_length=1, description="string: the values allowed")

    @model_validator(mode="after")
    def _check(self) -> JudgeField:
        numeric = self.type in ("number", "integer")
        if not numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to number and integer fields, not {self.type}")
        if self.choices is not None and self.type != "string":
            raise ValueError(f"choices apply to string fields, not {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} > max {self.max:g}")
        return self


class LLMJudgeParams(StepParams):
    """Judge with the LLM: a template -> scores, labels or a JSON verdict parsed into columns; an
    answer that does not parse quarantines the row with the raw answer and the error."""

    needs_llm: ClassVar[bool] = True
    writes_new_columns: ClassVar[bool] = True
    template: str = Field(description=f"{_TEMPLATE} (+ `criterion`, and `item`/`index` with `each`)")
    answer: Literal["score", "label", "json"] = Field(
        "score",
        description="score: the answer starts with a number on `scale`; label: its first word is one of "
        "`labels`; json: it holds a JSON object with `fields`",
    )
    criteria: list[Column] = Field(
        default_factory=list,
        description="score/label: one request per criterion (`criterion` in the template), each into the "
        "column of its name",
    )
    scale: tuple[float, float] | None = Field(
        None, description="score: the lowest and highest score (default [1, 10])"
    )
    labels: list[Annotated[str, StringConstraints(pattern=r"^\S+$")]] = Field(
        default_factory=list, description="label: the words a verdict may be (case-insensitive)"
    )
    fields: dict[Column, JudgeField] = Field(
        default_factory=dict, description="json: the verdict's fields, each into the column of its name"
    )
    each: Column | None = Field(
        None,
        description="a list column: judge every item (`item`, `index` in the template); the output "
        "columns are then lists parallel to it",
    )
    assistant_prefill: str | None = Field(
        None, description="text the answer starts with (e.g. 'Score:'); the model continues it"
    )
    system_prompt: str | None = None
    generation: DecodingOverride = Field(default_factory=DecodingOverride)

    @model_validator(mode="after")
    def _check(self) -> LLMJudgeParams:
        if self.answer == "json":
            if not self.fields:
                raise ValueError("answer json needs `fields` (name: {type: ...})")
            if self.criteria:
                raise ValueError("answer json takes `fields`, not `criteria` (one request per row or item)")
        else:
            if not self.criteria:
                raise ValueError(f"answer {self.answer} needs `criteria` (one column per criterion)")
            if self.fields:
                raise ValueError(f"`fields` apply to answer json, not {self.answer}")
        if self.answer == "label" and not self.labels:
            raise ValueError("answer label needs `labels`")
        if self.labels and self.answer != "label":  # set but never read: say so, not ignore it
            raise ValueError(f"`labels` apply to answer label, not {self.answer}")
        if self.scale is not None and self.answer != "score":
            raise ValueError(f"`scale` applies to answer score, not {self.answer}")
        if dupes := _duplicates(self.criteria):
            raise ValueError(f"criteria repeat: {', '.join(dupes)}")
        low, high = self.score_scale()
        if low >= high:
            raise ValueError(f"scale [{low:g}, {high:g}] must go from low to high")
        if self.each is not None and self.each in self.output_columns():
            raise ValueError(f"`each` column {self.each!r} is also an output column")
        return self

    def output_columns(self) -> list[str]:
        return list(self.fields) if self.answer == "json" else list(self.criteria)

    def score_scale(self) -> tuple[float, float]:
        return self.scale if self.scale is not None else (1, 10)

    def template_variables(self) -> list[str]:
        """`item` and `index` with `each`, `criterion` with `criteria`."""
        return (["item", "index"] if self.each else []) + (["criterion"] if self.criteria else [])

    def list_columns(self) -> dict[str, str]:
        return {"each": self.each} if self.each else {}

    def value_columns(self) -> list[str]:
        return [] if self.each else self.output_columns()

    def llm_calls_per_row(self) -> float:
        return float(len(self.criteria)) if self.answer != "json" else 1.0

    def items_column(self) -> str | None:
        return self.each

    def list_lengths(self, known: dict[str, int]) -> dict[str, int]:
        if self.each is None or self.each not in known:
            return {}
        return {c: known[self.each] for c in self.output_columns()}

    def summary(self) -> str:
        what = {
            "score": "scores on [{:g}, {:g}]".format(*self.score_scale()),
            "label": f"a label ({' / '.join(self.labels)})",
            "json": "a JSON verdict",
        }[self.answer]
        per = f"every item of `{self.each}`" if self.each else "each row"
        return (
            f"LLM judge: template `{self.template}` asks for {what} for {per} -> columns "
            f"{', '.join(f'`{c}`' for c in self.output_columns())}; unparseable answers are quarantined"
        )


class FilterRule(BaseModel):
    """One condition a row must meet to stay; a row failing it is filtered with the rule's `name`.

    A rule is one kind: keywords (`contains_any` / `contains_none`), a regex (`matches` /
    `not_matches`), length bounds (`min_chars`, `max_chars`, `min_words`, `max_words`) on `column`,
    or an `expression`. On a list column a text rule must hold for every item.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_RULE_NAME, description="the rule name the manifest counts filtered rows under")
    column: Column | None = Field(
        None, description="the text (or list of texts) a keyword/regex/length rule reads"
    )
    contains_any: list[str] | None = Field(
        None, min_length=1, description="keep rows containing one of these"
    )
    contains_none: list[str] | None = Field(
        None, min_length=1, description="keep rows containing none of these"
    )
    ignore_case: bool | None = Field(
        None, description="keyword and regex rules: match regardless of case (default true)"
    )
    matches: str | None = Field(None, description="keep rows where this regex is found (re.search)")
    not_matches: str | None = Field(None, description="keep rows where this regex is not found")
    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    min_words: int | None = Field(None, ge=0)
    max_words: int | None = Field(None, ge=0)
    expression: str | None = Field(
        None,
        description="a Jinja2 expression over the row's columns, evaluated in a sandbox; the row stays "
        "when it is true (e.g. `ranked_scores[0] - ranked_scores[-1] >= 2`)",
    )

    def kind(self) -> str:
        kinds = [
            k
            for k in ("contains_any", "contains_none", "matches", "not_matches", "expression")
            if getattr(self, k) is not None
        ]
        if any(getattr(self, k) is not None for k in ("min_chars", "max_chars", "min_words", "max_words")):
            kinds.append("length")
        if len(kinds) != 1:
            shown = ", ".join(kinds) or "none"
            raise ValueError(
                "a rule sets exactly one of contains_any, contains_none, matches, not_matches, expression "
                f"or length bounds (min_chars/max_chars/min_words/max_words); got {shown}"
            )
        return kinds[0]

    @model_validator(mode="after")
    def _check(self) -> FilterRule:
        kind = self.kind()
        if kind == "expression":
            if self.column is not None:
                raise ValueError("an expression rule reads columns by name: drop `column`")
            _check_expression(self.expression or "")
        elif self.column is None:
            raise ValueError(f"a {kind} rule needs `column`")
        if self.ignore_case is not None and kind in ("expression", "length"):
            raise ValueError(f"ignore_case applies to keyword and regex rules, not {kind} rules")
        for pattern in (self.matches, self.not_matches):
            if pattern is not None:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        for low, high in (("min_chars", "max_chars"), ("min_words", "max_words")):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValueError(f"{low} {lo} > {high} {hi}")
        return self

    def describe(self) -> str:
        kind = self.kind()
        if kind == "expression":
            return f"`{self.name}`: `{self.expression}`"
        if kind == "length":
            bounds = [f"{k}={getattr(self, k)}" for k in ("min_chars", "max_chars", "min_words", "max_words")]
            shown = ", ".join(b for b in bounds if not b.endswith("=None"))
            return f"`{self.name}`: {shown} on `{self.column}`"
        value = getattr(self, kind)
        shown = f"{len(value)} keywords" if isinstance(value, list) else f"/{value}/"
        return f"`{self.name}`: {kind} {shown} on `{self.column}`"


def _check_expression(expression: str) -> None:
    """A syntax check at load time (jinja2 imported only here, so `schemas` stays light to import).
    Parsed only, never compiled: outside the sandbox, compiling folds constants (`"a" * 10 ** 10`
    would be built right here); factory/steps/filter.py compiles it in the sandbox."""
    from jinja2 import Environment
    from jinja2.exceptions import TemplateSyntaxError
    from jinja2.parser import Parser

    try:
        parser = Parser(Environment(), expression, state="variable")  # as compile_expression parses
        parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    except TemplateSyntaxError as exc:
        raise ValueError(f"expression {expression!r}: {exc.message}") from None


class FilterParams(StepParams):
    """Keep the rows that meet every rule; the first rule a row fails filters it under that rule's name."""

    rules: list[FilterRule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique_names(cls, rules: list[FilterRule]) -> list[FilterRule]:
        if dupes := _duplicates([r.name for r in rules]):
            raise ValueError(f"rule names repeat: {', '.join(dupes)}")
        return rules

    def summary(self) -> str:
        return "Filter (a row failing a rule is filtered under the rule's name): " + "; ".join(
            r.describe() for r in self.rules
        )


class RankParams(StepParams):
    """Order a list column by a score column (or the weighted sum of several), best first."""

    writes_new_columns: ClassVar[bool] = True
    column: Column = Field(description="the list column to order (e.g. the sampled responses)")
    by: Column | dict[Column, float] = Field(
        description="a score column parallel to `column`, or columns with weights: their weighted sum"
    )
    descending: bool = Field(
        True, description="true: a higher score is better; false: a lower one (`scores_into` then negated)"
    )
    into: Column = Field("ranked", description="the items best first")
    scores_into: Column = Field(
        "ranked_scores",
        description="their scores in the same order, higher is better (negated with descending: false)",
    )
    dedupe: bool = Field(True, description="identical items (ignoring surrounding space) keep only the best")
    min_items: int = Field(
        2, ge=1, description="fewer (distinct) items filter the row (rule fewer_than_<min_items>_items)"
    )

    @model_validator(mode="after")
    def _check(self) -> RankParams:
        if isinstance(self.by, dict) and not self.by:
            raise ValueError("`by` names at least one score column")
        if self.into == self.scores_into:
            raise ValueError("into and scores_into must differ")
        reads = {self.column, *self.score_columns()}
        if clash := sorted(reads & {self.into, self.scores_into}):
            raise ValueError(f"{clash[0]!r} is read and written; write the ranking to new columns")
        return self

    def score_columns(self) -> dict[str, float]:
        return {self.by: 1.0} if isinstance(self.by, str) else dict(self.by)

    def list_columns(self) -> dict[str, str]:
        scores = {"by": self.by} if isinstance(self.by, str) else {f"by.{c}": c for c in self.by}
        return {"column": self.column, **scores}

    def list_lengths(self, known: dict[str, int]) -> dict[str, int]:
        n = known.get(self.column)
        return {} if n is None else {self.into: n, self.scores_into: n}

    def summary(self) -> str:
        weights = self.score_columns()
        score = (
            f"`{next(iter(weights))}`"
            if len(weights) == 1
            else " + ".join(f"{w:g} × `{c}`" for c, w in weights.items())
        )
        order = "highest" if self.descending else "lowest"
        scores = "scores" if self.descending else "scores negated (higher is better)"
        dedupe = ", identical items dropped" if self.dedupe else ""
        return (
            f"Rank: the items of `{self.column}` by {score}, {order} first, into `{self.into}` with their "
            f"{scores} in `{self.scores_into}`{dedupe}; rows with fewer than {self.min_items} distinct "
            "items are filtered"
        )


# -- exporters -------------------------------------------------------------------------------------


class _FromList(ExporterParams):
    prompt_column: Column = Field("prompt", description="the user request (text)")
    responses_column: Column = Field("ranked", description="the responses: a list, best first unless scored")
    scores_column: Column | None = Field(
        "ranked_scores",
        description="scores parallel to the responses (higher is better); null: the list order is the ranking",
    )

    def columns_read(self) -> list[str]:
        return [
            self.prompt_column,
            self.responses_column,
            *([self.scores_column] if self.scores_column else []),
        ]

    def list_columns(self) -> dict[str, str]:
        scores = {"scores_column": self.scores_column} if self.scores_column else {}
        return {"responses_column": self.responses_column, **scores}


def _margin_needs_scores(min_margin: float, scores_column: str | None) -> None:
    if min_margin and scores_column is None:
        raise ValueError("min_margin compares scores: it needs scores_column")


class _Conversational(BaseModel):
    system_prompt: str | None = Field(None, description="a system message before the user's, in every prompt")


class PairsParams(_FromList):
    """Preference pairs from a ranked or scored list: best vs worst, or every ordered pair."""

    pairing: Literal["best_vs_worst", "all"] = Field(
        "best_vs_worst", description="best_vs_worst: one pair per row; all: every pair (better, worse)"
    )
    min_margin: float = Field(
        0.0,
        ge=0.0,
        description="with scores: only pairs whose chosen score beats the rejected by at least this",
    )
    principle: str = Field("judge_preference", min_length=1, description="the `principle` of every pair")

    @model_validator(mode="after")
    def _check(self) -> PairsParams:
        _margin_needs_scores(self.min_margin, self.scores_column)
        return self

    def summary(self) -> str:
        how = (
            "the best against the worst response" if self.pairing == "best_vs_worst" else "every ordered pair"
        )
        by = f"scores `{self.scores_column}`" if self.scores_column else "the order of the list"
        margin = ""
        if self.scores_column:
            margin = (
                f", chosen scoring higher by at least {self.min_margin:g}"
                if self.min_margin
                else (", chosen scoring strictly higher")
            )
        return f"Preference pairs: {how} of `{self.responses_column}` by {by}{margin}"


class ConversationalPairsParams(PairsParams, _Conversational):
    """Preference pairs (TRL's conversational format) from a ranked or scored list."""


class SFTParams(ExporterParams):
    """Supervised fine-tuning rows: the prompt and a response (a text column, or the best / every item of a list)."""

    prompt_column: Column = Field("prompt", description="the user request (text)")
    response_column: Column = Field(
        "ranked", description="a text column, or a list of texts (best first unless scored)"
    )
    take: Literal["first", "all"] | None = Field(
        None, description="of a list: its best item (the default), or every item"
    )
    scores_column: Column | None = Field(
        None,
        description="scores parallel to a list column (higher is better): they order it, best first, "
        "as the pair and KTO exporters do",
    )
    min_score: float | None = Field(
        None, description="only items scoring at least this (needs scores_column)"
    )

    @model_validator(mode="after")
    def _check(self) -> SFTParams:
        if self.min_score is not None and self.scores_column is None:
            raise ValueError("min_score needs scores_column")
        return self

    def columns_read(self) -> list[str]:
        return [
            self.prompt_column,
            self.response_column,
            *([self.scores_column] if self.scores_column else []),
        ]

    def list_columns(self) -> dict[str, str]:
        return {"take": self.response_column} if self.take is not None else {}  # `take` picks from a list

    def summary(self) -> str:
        which = "every item" if self.take == "all" else "the best item"
        floor = (
            f" scoring at least {self.min_score:g} by `{self.scores_column}`"
            if self.min_score is not None
            else ""
        )
        return f"SFT rows: `{self.prompt_column}` with {which} of `{self.response_column}`{floor}"


class ConversationalSFTParams(SFTParams, _Conversational):
    """SFT rows (TRL's conversational `messages` format)."""


class ResponsesParams(ExporterParams):
    """Prompt-response rows: a prompt column and its answer (a `generate.respond` stage's columns)."""

    prompt_column: Column = Field("prompt", description="the user request (text): the stage's input_column")
    response_column: Column = Field("response", description="the answer (text): the stage's output_column")

    def columns_read(self) -> list[str]:
        return [self.prompt_column, self.response_column]

    def summary(self) -> str:
        return f"Prompt-response rows: `{self.prompt_column}` with its answer `{self.response_column}`"


class KTOParams(_FromList):
    """Unpaired KTO rows from a ranked or scored list: best desirable and worst undesirable, or by score thresholds."""

    labels: Literal["best_and_worst", "threshold"] = Field(
        "best_and_worst",
        description="best_and_worst: the best item desirable, the worst undesirable; threshold: every item "
        "scoring >= desirable_min desirable, <= undesirable_max undesirable, the rest left out",
    )
    min_margin: float = Field(
        0.0, ge=0.0, description="best_and_worst with scores: the best must beat the worst by this"
    )
    desirable_min: float | None = Field(
        None, description="threshold: items scoring at least this are desirable"
    )
    undesirable_max: float | None = Field(
        None, description="threshold: items scoring at most this are undesirable"
    )

    @model_validator(mode="after")
    def _check(self) -> KTOParams:
        if self.labels == "threshold":
            if self.scores_column is None or self.desirable_min is None or self.undesirable_max is None:
                raise ValueError("labels threshold needs scores_column, desirable_min and undesirable_max")
            if self.desirable_min <= self.undesirable_max:
                raise ValueError("desirable_min must be above undesirable_max")
            if self.min_margin:
                raise ValueError("min_margin applies to labels best_and_worst, not threshold")
        else:
            if self.desirable_min is not None or self.undesirable_max is not None:
                raise ValueError("desirable_min and undesirable_max apply to labels threshold")
            _margin_needs_scores(self.min_margin, self.scores_column)
        return self

    def summary(self) -> str:
        if self.labels == "threshold":
            return (
                f"KTO rows: items of `{self.responses_column}` scoring >= {self.desirable_min:g} desirable, "
                f"<= {self.undesirable_max:g} undesirable (by `{self.scores_column}`)"
            )
        return f"KTO rows: the best item of `{self.responses_column}` desirable, the worst undesirable"


class ConversationalKTOParams(KTOParams, _Conversational):
    """KTO rows (TRL's conversational format) from a ranked or scored list."""
