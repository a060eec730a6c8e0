"""The generic steps and exporters recipe authors compose in YAML, declared like a method."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from schemas.generation import DecodingOverride
from schemas.methods.base import ExporterDeclaration, MethodDeclaration, StepDeclaration
from schemas.step_params import StepParams


class RespondParams(StepParams):
    """Answer one column with the LLM: [system?][user: row[input_column]] -> row[output_column]."""

    needs_llm: ClassVar[bool] = True
    input_column: str = "prompt"
    output_column: str = "response"
    system_prompt: str | None = None
    generation: DecodingOverride = Field(default_factory=DecodingOverride)


METHOD = MethodDeclaration(
    name="generic",
    label="generic steps",
    paper=None,
    steps={
        "generate.respond": StepDeclaration(RespondParams, "factory.steps.generate:Respond"),
    },
    exporters={
        "generate.responses": ExporterDeclaration(
            "prompt_response", "factory.export.generic:generate_responses"
        ),
    },
)
