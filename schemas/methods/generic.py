"""The generic steps and exporters recipe authors compose in YAML, declared like a method (their params:
`schemas/generic_params.py`; a guide: docs/authoring.md)."""

from __future__ import annotations

from schemas.generic_params import (
    ConversationalKTOParams,
    ConversationalPairsParams,
    ConversationalSFTParams,
    FilterParams,
    KTOParams,
    LLMGenerateParams,
    LLMJudgeParams,
    PairsParams,
    RankParams,
    RespondParams,
    ResponsesParams,
    SFTParams,
)
from schemas.methods.base import ExporterDeclaration, MethodDeclaration, StepDeclaration

_EXPORT = "factory.export.generic"

METHOD = MethodDeclaration(
    name="generic",
    label="generic steps",
    paper=None,
    steps={
        "llm.generate": StepDeclaration(LLMGenerateParams, "factory.steps.llm:LLMGenerate"),
        "llm.judge": StepDeclaration(LLMJudgeParams, "factory.steps.llm:LLMJudge"),
        "filter": StepDeclaration(FilterParams, "factory.steps.filter:Filter"),
        "rank": StepDeclaration(RankParams, "factory.steps.rank:Rank"),
        "generate.respond": StepDeclaration(RespondParams, "factory.steps.llm:LLMGenerate"),
    },
    exporters={
        "pairs": ExporterDeclaration("preference_pair", f"{_EXPORT}:pairs", PairsParams),
        "pairs_conversational": ExporterDeclaration(
            "conversational_pair", f"{_EXPORT}:pairs_conversational", ConversationalPairsParams
        ),
        "sft": ExporterDeclaration("sft_row", f"{_EXPORT}:sft", SFTParams),
        "sft_conversational": ExporterDeclaration(
            "conversational_sft_row", f"{_EXPORT}:sft_conversational", ConversationalSFTParams
        ),
        "kto": ExporterDeclaration("kto_row", f"{_EXPORT}:kto", KTOParams),
        "kto_conversational": ExporterDeclaration(
            "conversational_kto_row", f"{_EXPORT}:kto_conversational", ConversationalKTOParams
        ),
        "generate.responses": ExporterDeclaration(
            "prompt_response", f"{_EXPORT}:generate_responses", ResponsesParams
        ),
    },
)
