"""KTO: TRL's `KTOTrainer` on single completions labelled desirable or undesirable.

Expected dataset format: `kto_row` or `conversational_kto_row`, as TRL conversational rows (`prompt` /
`completion` message lists and a bool `label`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.records import ConversationalKTORow, KTORow, assistant_turn, user_turn
from trainers.algorithms.base import Algorithm, BuiltTrainer, TrainingRun, message_dicts


class KTOSettings(BaseModel):
    """The `kto:` section."""

    model_config = ConfigDict(extra="forbid")
    beta: float = Field(default=0.1, gt=0)
    desirable_weight: float = Field(default=1.0, gt=0)
    undesirable_weight: float = Field(default=1.0, gt=0)


def build_trainer(run: TrainingRun) -> BuiltTrainer:
    from trl import KTOConfig, KTOTrainer

    settings = run.settings(KTOSettings)
    args = run.training_args(
        KTOConfig,
        beta=settings.beta,
        desirable_weight=settings.desirable_weight,
        undesirable_weight=settings.undesirable_weight,
        max_length=run.config.training.max_length,
    )
    return BuiltTrainer(run.trl_trainer(KTOTrainer, args, kto_rows(run.data.records)))


ALGORITHM = Algorithm(
    name="kto",
    settings=KTOSettings,
    record_schemas=("kto_row", "conversational_kto_row"),
    build=build_trainer,
    trl_names=True,
)


def kto_rows(records: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """TRL conversational KTO rows: prompt / completion message lists and a bool label."""
    rows = []
    for rec in records:
        if isinstance(rec, KTORow):
            prompt, completion = user_turn(rec.prompt), assistant_turn(rec.completion)
        elif isinstance(rec, ConversationalKTORow):
            prompt, completion = message_dicts(rec.prompt), message_dicts(rec.completion)
        else:
            raise TypeError(f"not a KTO row: {type(rec).__name__}")
        rows.append({"prompt": prompt, "completion": completion, "label": rec.label})
    return rows
