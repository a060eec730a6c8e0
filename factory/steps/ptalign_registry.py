"""PT-ALIGN step names -> implementations ("module:Class"), imported only when a run needs them."""

from __future__ import annotations

PTALIGN_STEPS: dict[str, str] = {
    "ptalign.refine_constraints": "factory.steps.ptalign:PTRefineConstraints",
    "ptalign.topics": "factory.steps.ptalign:PTTopics",
    "ptalign.instructions": "factory.steps.ptalign:PTInstructions",
    "ptalign.positive": "factory.steps.ptalign:PTPositive",
    "ptalign.toxic": "factory.steps.ptalign:PTToxic",
    "ptalign.refine": "factory.steps.ptalign:PTRefine",
    "ptalign.annotate_spans": "factory.steps.ptalign:PTAnnotateSpans",
    "ptalign.diff_spans": "factory.steps.ptalign:PTDiffSpans",
    "ptalign.assemble": "factory.steps.ptalign:PTAssemble",
}
