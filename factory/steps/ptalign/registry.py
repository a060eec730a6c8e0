"""PT-ALIGN step names -> implementations ("module:Class"), imported only when a run needs them."""

from __future__ import annotations

PTALIGN_STEPS: dict[str, str] = {
    "ptalign.refine_constraints": "factory.steps.ptalign.steps:PTRefineConstraints",
    "ptalign.topics": "factory.steps.ptalign.steps:PTTopics",
    "ptalign.instructions": "factory.steps.ptalign.steps:PTInstructions",
    "ptalign.positive": "factory.steps.ptalign.steps:PTPositive",
    "ptalign.toxic": "factory.steps.ptalign.steps:PTToxic",
    "ptalign.refine": "factory.steps.ptalign.steps:PTRefine",
    "ptalign.annotate_spans": "factory.steps.ptalign.steps:PTAnnotateSpans",
    "ptalign.diff_spans": "factory.steps.ptalign.steps:PTDiffSpans",
    "ptalign.assemble": "factory.steps.ptalign.steps:PTAssemble",
}
