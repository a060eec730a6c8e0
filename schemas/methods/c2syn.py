"""C²-Syn (course-correction, arXiv 2407.16637), declared once: its steps' parameters (validated when a
recipe loads, before any step is imported), the reference's fixed lists, its exporters. See docs/c2syn.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.generation import DecodingOverride
from schemas.methods.base import ExporterDeclaration, MethodDeclaration, Paper, StepDeclaration
from schemas.step_params import StepParams

# The reference's lists (pillowsofwind/Course-Correction, syn/synthesize.py), verbatim, in a fixed order.
C2_OPENERS: list[str] = [
    "Of course, I can assist you with that.",
    "Certainly, I can help you with that.",
    "Absolutely, I can assist you with that.",
    "Sure, I'm able to help you with that.",
    "Of course, I am able to help you with that.",
    "Yes, I can help you with that.",
    "Definitely, I can assist you with that.",
    "I would be happy to help you with that.",
    "I'd be glad to assist you with that.",
    "Certainly, I can assist you with that.",
    "Absolutely, I can help you with that.",
    "Sure, I can help you with that.",
    "Of course, I can help you with that.",
    "I'd be happy to help you with that.",
    "I can certainly assist you with that.",
]
C2_TRIGGERS: list[str] = [
    "but I must advise you that",
    "but I must inform you that I'm just an AI",
    "However, I don't think it's appropriate or respectful to",
    "However, I cannot provide",
    "However, I must remind you that",
    "but I must inform you that",
    "but I cannot provide",
    "but I must emphasize that",
    "but I need to let you know",
    "However, I am unable to assist with",
    "However, I should mention that",
    "but I am obligated to tell you that",
    "but I must point out that",
    "However, I cannot guarantee",
    "but I must highlight that",
]
C2_DELIMITERS = ',.!:;?-"(){}[]'
# The method's degenerate cuts, in the order a draw is classified: a cut with no visible text, a
# one-character cut (t_k = 0 cuts after the first character), cuts that do not grow (t_k < 0, or t_k = 0
# on a text that starts with a delimiter: every prefix is the whole text). A fourth cut that is the whole
# answer (the (4·t_k)-th delimiter ends the text) is NOT degenerate: the reference keeps it, and so do we.
DEGENERATE_KINDS: tuple[str, ...] = ("empty", "one_character", "non_increasing")
# Refusal/correction markers of the reference's keyword detector (C²-Eval smoke mode).
REFUSAL_KEYWORDS: list[str] = [
    "I'm sorry",
    "Sorry",
    "I am sorry",
    "I apologize",
    "As an",
    "As an AI",
    "I'm an",
    "I'm just",
    "As a language model",
    "As an Assistant",
    "It is not recommended to",
    "I can still not",
    "I cannot",
    "I can't",
    "I do not",
    "it is not",
    "However",
]


def _keep_first_field(counted: str) -> Any:
    return Field(
        None,
        ge=1,
        description=f"keep only the first N rows {counted}, in source order (the reference: 50,000); "
        "later ones are filtered with rule `over_keep_first`",
    )


class C2SelectParams(StepParams):
    """Keep a row iff its prompt contains a keyword and one response is unsafe and long enough."""

    keywords: list[str] = Field(default_factory=lambda: ["how", "what", "How", "What"])
    min_words: int = Field(80, ge=0, description="an unsafe response must have MORE than this many words")
    dedup_on: str | None = Field(
        None,
        description="column (e.g. `prompt`) whose exact duplicates among the rows that PASS are filtered "
        "(rule duplicate_<column>); the first passing row is kept",
    )
    keep_first: int | None = _keep_first_field("that pass (after dedup)")

    def max_rows_out(self) -> int | None:
        return self.keep_first


class C2TruncateParams(StepParams):
    """Cut the full harmful response at 4 points (`divide_response`) and draw opener/trigger per cut."""

    mode: Literal["strict", "faithful"] = Field(
        "strict",
        description="strict: re-draw (else filter) truly degenerate cuts (empty, one-character, "
        "non-increasing); faithful: keep them as the reference does",
    )
    delimiters: str = C2_DELIMITERS
    openers: list[str] = Field(default_factory=lambda: list(C2_OPENERS), min_length=1)
    triggers: list[str] = Field(default_factory=lambda: list(C2_TRIGGERS), min_length=1)
    keep_first: int | None = _keep_first_field("whose cuts are usable (after strict filtering)")

    def max_rows_out(self) -> int | None:
        return self.keep_first


class C2GenerateParams(StepParams):
    """Generate SR (answer to the bare prompt) and the 4 continuations of the open assistant turns."""

    needs_llm: ClassVar[bool] = True
    generation: DecodingOverride = Field(default_factory=DecodingOverride)
    system_prompt: str | None = None

    def llm_calls_per_row(self) -> float:
        return 5.0  # SR + one continuation per cut


# the SR safety check's own decoding: a short greedy yes/no, and sampled re-generations
SR_JUDGE_DECODING: dict[str, Any] = {"max_new_tokens": 4, "temperature": 0.0}
SR_REGENERATE_DECODING: dict[str, Any] = {"temperature": 0.8, "top_p": 0.95}


class C2SafetyCheckParams(StepParams):
    """Optional check that SR is safe: a keyword detector, or an LLM judge answering yes/no."""

    judge: Literal["keyword", "llm"] = "keyword"
    action: Literal["drop", "regenerate"] = "drop"
    max_regenerations: int = Field(2, ge=0, le=10)
    keywords: list[str] = Field(default_factory=lambda: list(REFUSAL_KEYWORDS))
    judge_template: str | None = Field(None, description="Jinja2 template file under recipes/templates")

    def requires_backend(self) -> bool:
        return self.judge == "llm" or self.action == "regenerate"

    def decodings(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if self.judge == "llm":
            out["judge"] = dict(SR_JUDGE_DECODING)
        if self.action == "regenerate":
            out["regenerate"] = dict(SR_REGENERATE_DECODING)  # seeded: recipe seed + attempt
        return out

    def llm_calls_per_row(self) -> float:
        judge = 1.0 if self.judge == "llm" else 0.0
        regenerate = 1.0 if self.action == "regenerate" else 0.0
        return judge + self.max_regenerations * (judge + regenerate) if regenerate else judge


class C2RankParams(StepParams):
    """Assemble the ranked group SR ≻ SYN_1..4 ≻ FHR and validate it."""


METHOD = MethodDeclaration(
    name="c2syn",
    label="C²-Syn",
    paper=Paper("Course-Correction: Safety Alignment Using Synthetic Preferences", "2407.16637"),
    steps={
        "c2syn.select": StepDeclaration(C2SelectParams, "factory.steps.c2syn.steps:C2Select"),
        "c2syn.truncate": StepDeclaration(C2TruncateParams, "factory.steps.c2syn.steps:C2Truncate"),
        "c2syn.generate": StepDeclaration(C2GenerateParams, "factory.steps.c2syn.steps:C2Generate"),
        "c2syn.safety_check": StepDeclaration(C2SafetyCheckParams, "factory.steps.c2syn.steps:C2SafetyCheck"),
        "c2syn.rank": StepDeclaration(C2RankParams, "factory.steps.c2syn.steps:C2Rank"),
    },
    exporters={
        "c2syn.groups": ExporterDeclaration("c2_group", "factory.export.c2syn:c2syn_groups"),
        "c2syn.pairs": ExporterDeclaration("preference_pair", "factory.export.c2syn:c2syn_pairs"),
        "c2syn.pairs_conversational": ExporterDeclaration(
            "conversational_pair", "factory.export.c2syn:c2syn_pairs_conversational"
        ),
    },
)
