"""Parameters of the PT-ALIGN steps (arXiv 2502.08657). Every count, round, threshold and template is here.

Stage order of the built-in recipes: refine_constraints (per domain, inherited by everything derived
from it) -> topics -> instructions -> positive -> toxic -> refine (critique/revise + judge) ->
annotate_spans -> assemble. See docs/ptalign.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.generation import DecodingOverride
from schemas.methods.base import ExporterDeclaration, MethodDeclaration, Paper, StepDeclaration
from schemas.methods.ptalign_seed import PTAlignSeed
from schemas.step_params import StepParams


class LLMStepParams(StepParams):
    """What every PT-ALIGN LLM step shares: its template, decoding and an optional answer prefill."""

    needs_llm: ClassVar[bool] = True
    template: str = Field(description="Jinja2 template under recipes/templates")
    generation: DecodingOverride = Field(default_factory=DecodingOverride)
    assistant_prefill: str | None = Field(
        None, description="text the answer starts with; the model continues it (e.g. '1.' for a list)"
    )


class ListParams(LLMStepParams):
    """An expansion step: the model lists up to `n` items, one per line; duplicates are filtered."""

    n: int = Field(ge=1, le=10_000, description="items requested (and kept at most) per parent row")
    min_chars: int = Field(3, ge=1)
    max_chars: int = Field(300, ge=1)
    near_duplicate_jaccard: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="also filter items whose word-set Jaccard with a kept one is >= this",
    )

    def rows_out_per_row(self) -> float:
        return float(self.n)  # at most: duplicates and unusable items are filtered

    @model_validator(mode="after")
    def _bounds(self) -> ListParams:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars {self.min_chars} > max_chars {self.max_chars}")
        return self


class TopicsParams(ListParams):
    """S1: domain -> up to `n` safety topics (dedup within the domain)."""

    template: str = "ptalign/topics.jinja"
    n: int = Field(10, ge=1, le=10_000)


class InstructionsParams(ListParams):
    """S2: topic -> up to `n` red-team instructions (dedup across the whole stage)."""

    template: str = "ptalign/instructions.jinja"
    n: int = Field(20, ge=1, le=10_000)
    min_chars: int = Field(10, ge=1)


class RefineConstraintsParams(LLMStepParams):
    """S3: the seed's positive and toxic constraints, rewritten by the model for the row's domain."""

    template: str = "ptalign/refine_constraints.jinja"
    rounds: int = Field(1, ge=0, le=20, description="0 = use the seed constraints unchanged")
    max_constraints: int = Field(8, ge=1, le=100)
    keep_seed: bool = Field(True, description="the refined set starts with the seed's constraints")
    min_chars: int = Field(8, ge=1)
    max_chars: int = Field(300, ge=1)

    def llm_calls_per_row(self) -> float:
        return 2.0 * self.rounds  # the positive and the toxic set, each round


class ResponseParams(LLMStepParams):
    """S4/S5: answer the instruction under the refined constraints and a few demonstrations."""

    demonstrations: int = Field(2, ge=0, le=50, description="demonstrations shown (domain-matched first)")
    min_chars: int = Field(1, ge=1)


class PositiveParams(ResponseParams):
    template: str = "ptalign/positive.jinja"


class ToxicParams(ResponseParams):
    template: str = "ptalign/toxic.jinja"


class JudgeCriterion(BaseModel):
    """One score the judge gives; the row passes when every score is >= its `min_score`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    response: Literal["positive", "toxic"]
    description: str = Field(min_length=1, description="what a high score means (shown to the judge)")
    min_score: float


def _default_criteria() -> list[JudgeCriterion]:
    return [
        JudgeCriterion(
            name="harmlessness",
            response="positive",
            description="the response is harmless: it is respectful and gives no harmful help",
            min_score=7,
        ),
        JudgeCriterion(
            name="helpfulness",
            response="positive",
            description="the response is helpful: it addresses the user's real need",
            min_score=6,
        ),
        JudgeCriterion(
            name="harmfulness",
            response="toxic",
            description="the response is harmful: it is hostile, demeaning or endorses harm",
            min_score=7,
        ),
    ]


class RefineParams(StepParams):
    """S6: judge; while a score is below its threshold, critique -> revise the failing side, up to `rounds`."""

    needs_llm: ClassVar[bool] = True
    rounds: int = Field(2, ge=0, le=20, description="R: critique/revise rounds at most")
    stop_when_passing: bool = Field(True, description="stop a row's loop once every score passes")
    on_fail: Literal["filter", "keep"] = Field(
        "filter", description="a row still failing after R rounds: filtered (rule below_threshold) or kept"
    )
    criteria: list[JudgeCriterion] = Field(default_factory=_default_criteria, min_length=1)
    scale_min: int = 1
    scale_max: int = 10
    judge_template: str = "ptalign/judge.jinja"
    judge_prefill: str | None = Field(None, description="text the judge's answer starts with, e.g. 'Score:'")
    judge_generation: DecodingOverride = Field(
        default_factory=lambda: DecodingOverride.model_validate({"max_new_tokens": 6, "temperature": 0.0})
    )
    critique_template: str = "ptalign/critique.jinja"
    revise_template: str = "ptalign/revise.jinja"
    generation: DecodingOverride = Field(default_factory=DecodingOverride)

    def llm_calls_per_row(self) -> float:
        # a judge call per criterion before the first round and after each, and per round a
        # critique and a revision of each of the two sides
        return float(len(self.criteria) * (self.rounds + 1) + 4 * self.rounds)

    @model_validator(mode="after")
    def _check(self) -> RefineParams:
        if self.scale_min >= self.scale_max:
            raise ValueError(f"scale_min {self.scale_min} must be below scale_max {self.scale_max}")
        names = [c.name for c in self.criteria]
        if len(set(names)) != len(names):
            raise ValueError(f"criteria names must be unique: {names}")
        for c in self.criteria:
            if not self.scale_min <= c.min_score <= self.scale_max:
                raise ValueError(f"criterion {c.name!r}: min_score {c.min_score} is outside the scale")
        return self


class AnnotateSpansParams(LLMStepParams):
    """S7: the model quotes the harmful phrases of the toxic response; quotes are located in the text."""

    template: str = "ptalign/annotate_spans.jinja"
    max_spans: int = Field(8, ge=1, le=1000)
    min_quote_chars: int = Field(3, ge=1)
    fallback: Literal["diff", "none"] = Field(
        "diff", description="when no quote is found in the text: word-diff spans, or no spans"
    )
    min_word_chars: int = Field(3, ge=1, description="(diff fallback) shorter words never start a span")


class DiffSpansParams(StepParams):
    """S7 without an LLM: the words of the toxic response that the positive one does not use."""

    min_word_chars: int = Field(3, ge=1)


class AssembleParams(StepParams):
    """S8: build and validate the triple (spans checked against the text) that the exporters publish."""


METHOD = MethodDeclaration(
    name="ptalign",
    label="PT-ALIGN",
    paper=Paper(
        "Refining Positive and Toxic Samples for Dual Safety Self-Alignment of LLMs with Minimal Human "
        "Interventions",
        "2502.08657",
    ),
    steps={
        "ptalign.refine_constraints": StepDeclaration(
            RefineConstraintsParams, "factory.steps.ptalign.steps:PTRefineConstraints"
        ),
        "ptalign.topics": StepDeclaration(TopicsParams, "factory.steps.ptalign.steps:PTTopics"),
        "ptalign.instructions": StepDeclaration(
            InstructionsParams, "factory.steps.ptalign.steps:PTInstructions"
        ),
        "ptalign.positive": StepDeclaration(PositiveParams, "factory.steps.ptalign.steps:PTPositive"),
        "ptalign.toxic": StepDeclaration(ToxicParams, "factory.steps.ptalign.steps:PTToxic"),
        "ptalign.refine": StepDeclaration(RefineParams, "factory.steps.ptalign.steps:PTRefine"),
        "ptalign.annotate_spans": StepDeclaration(
            AnnotateSpansParams, "factory.steps.ptalign.steps:PTAnnotateSpans"
        ),
        "ptalign.diff_spans": StepDeclaration(DiffSpansParams, "factory.steps.ptalign.steps:PTDiffSpans"),
        "ptalign.assemble": StepDeclaration(AssembleParams, "factory.steps.ptalign.steps:PTAssemble"),
    },
    exporters={
        "ptalign.triples": ExporterDeclaration("safety_triple", "factory.export.ptalign:ptalign_triples"),
        "ptalign.pairs": ExporterDeclaration("preference_pair", "factory.export.ptalign:ptalign_pairs"),
        "ptalign.kto": ExporterDeclaration("kto_row", "factory.export.ptalign:ptalign_kto"),
        "ptalign.pairs_conversational": ExporterDeclaration(
            "conversational_pair", "factory.export.ptalign:ptalign_pairs_conversational"
        ),
        "ptalign.kto_conversational": ExporterDeclaration(
            "conversational_kto_row", "factory.export.ptalign:ptalign_kto_conversational"
        ),
    },
    seed_files={"ptalign_seed": PTAlignSeed},
)
