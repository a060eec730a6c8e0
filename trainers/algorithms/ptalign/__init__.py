"""PT-ALIGN (docs/training.md, "Losses"): MLE on the harmless answer + token-level unlikelihood on the harmful
tokens of the toxic one, `L = L_MLE(y⁺) + α · L_UT(selected toxic tokens)`.

Expected dataset format: `safety_triple` records, trained as `prompt` (the plain instruction as one user
message), `positive`, `toxic` and `toxic_spans` (character offsets into `toxic`).

Here: the `ptalign:` section and the run's setup; `trainer.py`: `PTAlignTrainer` (imports torch),
the token encoding and the `ratio` rule's scores; `fidelity.py`: what the run reports about its
fidelity to the method (the rule used, the share penalised, self-alignment).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from factory.core.errors import UserError
from schemas.records import SafetyTriple, user_turn
from trainers.algorithms.base import Algorithm, BuiltTrainer, TrainingRun
from trainers.algorithms.ptalign.fidelity import (
    card_lines,
    penalised_share,
    resolve_selection,
    self_alignment,
    self_alignment_warning,
)
from trainers.losses import UT_EPSILON


class PTAlignSettings(BaseModel):
    """The `ptalign:` section."""

    model_config = ConfigDict(extra="forbid")
    alpha: float = Field(default=1.0, ge=0)
    epsilon: float = Field(default=UT_EPSILON, gt=0, lt=1)
    selection: Literal["auto", "all", "diff", "spans", "ratio"] = Field(
        default="auto",
        description="auto: `spans` when the dataset has annotated toxic spans (the pipeline paid LLM calls "
        "for them), else `diff`; the rule used is recorded in the training summary and model card",
    )
    unselected_toxic: Literal["none", "mle"] = Field(
        default="none", description="loss on toxic tokens not selected"
    )
    tau: float = Field(default=1.1, gt=0, description="ratio rule threshold")
    toxic_constraint: str = Field(
        default="Answer in a rude, dismissive and harmful way.",
        description="ratio rule: the system message that conditions p(y | x, toxic constraint)",
    )


def build_trainer(run: TrainingRun) -> BuiltTrainer:
    """The trainer on the encoded triples; reports the token rule used, the share of toxic tokens it
    penalises and whether the trained model generated the data."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from trainers.algorithms.ptalign.trainer import PTAlignTrainer, encode_rows
    from trainers.model import with_adapter

    rows = triple_rows(run.data.records)
    settings = run.settings(PTAlignSettings)
    settings = settings.model_copy(update={"selection": resolve_selection(settings.selection, rows)})
    if settings.selection == "spans" and not any(r["toxic_spans"] for r in rows):
        raise UserError(f"{run.data.source}: ptalign.selection is `spans` but no row has toxic_spans")
    model = with_adapter(run.model, run.config.lora, run.config.training.gradient_checkpointing)
    encoded = encode_rows(rows, model, run.tokenizer, settings)
    if not any(any(e["tox_ut"]) for e in encoded):
        raise UserError(
            f"{run.data.source}: ptalign.selection `{settings.selection}` marks no toxic token in any row"
        )
    summary = {
        "ptalign_selection": settings.selection,
        **penalised_share(encoded),
        **self_alignment(run.data.manifest, run.base_model),
    }
    trainer = PTAlignTrainer(
        model=model,
        args=run.training_args(TrainingArguments),
        train_dataset=Dataset.from_list(encoded),
        processing_class=run.tokenizer,
        settings=settings,
        max_length=run.config.training.max_length,
    )
    reported = {**summary, "base_model": run.base_model}
    warning = self_alignment_warning(reported)
    return BuiltTrainer(trainer, summary, card_lines(reported), [warning] if warning else [])


ALGORITHM = Algorithm(
    name="ptalign",
    settings=PTAlignSettings,
    record_schemas=("safety_triple",),
    build=build_trainer,
)


def triple_rows(records: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """PT-ALIGN rows: the plain instruction as prompt (no constraints), positive, toxic and its spans."""
    rows = []
    for rec in records:
        if not isinstance(rec, SafetyTriple):
            raise TypeError(f"not a safety triple: {type(rec).__name__}")
        rows.append(
            {
                "prompt": user_turn(rec.instruction),
                "positive": rec.positive,
                "toxic": rec.toxic,
                "toxic_spans": [[s.start, s.end] for s in rec.toxic_spans],
            }
        )
    return rows
