"""DPO: TRL's `DPOTrainer` on preference pairs, or group-aware (`group_forward: true`, group_dpo.py).

Expected dataset format: `preference_pair`, `conversational_pair`, or `c2_group` (expanded to its 15
pairs), as TRL conversational rows (`prompt` / `chosen` / `rejected` message lists). With
`group_forward` the rows are prompt groups instead: pairs grouped by `group_id`, `c2_group` records
as they are, and `per_device_train_batch_size` counts groups.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from factory.core.errors import UserError
from schemas.records import C2Group, ConversationalPair, PreferencePair, assistant_turn, user_turn
from trainers.algorithms.base import Algorithm, BuiltTrainer, TrainingRun, message_dicts
from trainers.losses import DPO_LOSS_TYPES


class DPOSettings(BaseModel):
    """The `dpo:` section; `loss_type` is any of TRL's (group-aware: those of `DPO_LOSS_TYPES`)."""

    model_config = ConfigDict(extra="forbid")
    beta: float = Field(default=0.1, gt=0)
    loss_type: str = "sigmoid"
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)
    group_forward: bool = Field(default=False, description="score each response once per prompt group")
    precompute_ref_log_probs: bool = False

    @model_validator(mode="after")
    def _check(self) -> DPOSettings:
        if self.group_forward and self.loss_type not in DPO_LOSS_TYPES:
            raise ValueError(
                f"group_forward supports loss_type {list(DPO_LOSS_TYPES)}, got {self.loss_type!r}"
            )
        if self.group_forward and self.precompute_ref_log_probs:
            raise ValueError(
                "group_forward computes reference log-probs per group; unset precompute_ref_log_probs"
            )
        return self


def build_trainer(run: TrainingRun) -> BuiltTrainer:
    from trl import DPOConfig, DPOTrainer

    settings = run.settings(DPOSettings)
    args = run.training_args(
        DPOConfig,
        beta=settings.beta,
        loss_type=[settings.loss_type],
        label_smoothing=settings.label_smoothing,
        precompute_ref_log_probs=settings.precompute_ref_log_probs,
        max_length=run.config.training.max_length,
    )
    if settings.group_forward:
        from trainers.algorithms.group_dpo import GroupDPOTrainer

        trainer = run.trl_trainer(GroupDPOTrainer, args, group_rows(run.data.records, where=run.data.source))
    else:
        trainer = run.trl_trainer(DPOTrainer, args, preference_rows(run.data.records))
    return BuiltTrainer(trainer, summary={"group_forward": settings.group_forward})


ALGORITHM = Algorithm(
    name="dpo",
    settings=DPOSettings,
    record_schemas=("preference_pair", "conversational_pair", "c2_group"),
    build=build_trainer,
    trl_names=True,
)


def preference_rows(records: Sequence[BaseModel]) -> list[dict[str, Any]]:
    """TRL conversational preference rows: prompt / chosen / rejected message lists."""
    rows: list[dict[str, Any]] = []
    for rec in records:
        if isinstance(rec, C2Group):
            rows.extend(preference_rows(list(rec.pairs())))
        elif isinstance(rec, PreferencePair):
            rows.append(
                {
                    "prompt": user_turn(rec.prompt),
                    "chosen": assistant_turn(rec.chosen),
                    "rejected": assistant_turn(rec.rejected),
                }
            )
        elif isinstance(rec, ConversationalPair):
            rows.append(
                {
                    "prompt": message_dicts(rec.prompt),
                    "chosen": message_dicts(rec.chosen),
                    "rejected": message_dicts(rec.rejected),
                }
            )
        else:
            raise TypeError(f"not a preference record: {type(rec).__name__}")
    return rows


def group_rows(records: Sequence[BaseModel], *, where: str = "dataset") -> list[dict[str, Any]]:
    """One row per prompt group: its unique responses once, and the (chosen, rejected) index pairs.

    Pairs are grouped by `group_id`; `c2_group` records are groups already (6 responses, 15 pairs).
    """
    groups: dict[str, dict[str, Any]] = {}
    for rec in records:
        if isinstance(rec, C2Group):
            pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
            groups[rec.group_id] = {
                "prompt": user_turn(rec.prompt),
                "responses": [assistant_turn(r.text) for r in rec.responses],
                "chosen_index": [i for i, _ in pairs],
                "rejected_index": [j for _, j in pairs],
            }
            continue
        if isinstance(rec, PreferencePair):
            prompt, chosen, rejected = (
                user_turn(rec.prompt),
                assistant_turn(rec.chosen),
                assistant_turn(rec.rejected),
            )
        elif isinstance(rec, ConversationalPair):
            prompt, chosen, rejected = (
                message_dicts(rec.prompt),
                message_dicts(rec.chosen),
                message_dicts(rec.rejected),
            )
        else:
            raise TypeError(f"not a preference record: {type(rec).__name__}")
        group = groups.setdefault(
            rec.group_id,
            {"prompt": prompt, "responses": [], "chosen_index": [], "rejected_index": [], "_keys": {}},
        )
        if group["prompt"] != prompt:
            raise UserError(
                f"{where}: group_id {rec.group_id!r} mixes different prompts; group_forward needs one per group"
            )
        keys: dict[str, int] = group["_keys"]
        idx = []
        for response in (chosen, rejected):
            key = json.dumps(response, sort_keys=True)
            if key not in keys:
                keys[key] = len(group["responses"])
                group["responses"].append(response)
            idx.append(keys[key])
        group["chosen_index"].append(idx[0])
        group["rejected_index"].append(idx[1])
    for group in groups.values():
        group.pop("_keys", None)
    return list(groups.values())
