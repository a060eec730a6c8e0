"""What an algorithm declares, what it is given to build its trainer, and what it hands back.

An algorithm module stays light at import (torch and TRL are imported inside `build`, or by a Trainer
subclass's own module), so loading and validating a config never loads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from factory.core.errors import UserError

if TYPE_CHECKING:
    from trainers.config import TrainConfig
    from trainers.data import TrainingDataset

Settings = TypeVar("Settings", bound=BaseModel)


@dataclass
class BuiltTrainer:
    """An algorithm's trainer, ready for `.train()`, and what the run reports about the algorithm."""

    trainer: Any
    summary: dict[str, Any] = field(default_factory=dict)  # its fields in training_summary.json
    card: list[str] = field(default_factory=list)  # its section of the model card (Markdown lines)
    warnings: list[str] = field(default_factory=list)  # printed before training starts


@dataclass(frozen=True)
class Algorithm:
    """One training algorithm, declared once in its module (`ALGORITHM = Algorithm(...)`).

    `name` is the config's `algorithm:` value and the name of its settings section (`dpo:`).
    `record_schemas` are the record schemas (schemas.records) it trains on, in order of preference.
    `trl_names`: TRL's flat config names of the section's fields (`beta: 0.1` at the top level, as
    `trl dpo --config` reads them) belong to this section.
    """

    name: str
    settings: type[BaseModel]
    record_schemas: tuple[str, ...]
    build: Callable[[TrainingRun], BuiltTrainer]
    trl_names: bool = False


@dataclass
class TrainingRun:
    """What an algorithm builds its trainer from: the validated config and dataset, the loaded model."""

    config: TrainConfig
    data: TrainingDataset
    model: Any
    tokenizer: Any
    base_model: str  # the Hub id or path the weights came from (the bundled model: its Hub id)
    out_dir: Path
    bf16: bool

    def settings(self, kind: type[Settings]) -> Settings:
        """The config's section of the algorithm being run."""
        section = self.config.algorithm_settings()
        assert isinstance(section, kind), (self.config.algorithm, kind)
        return section

    def training_args(self, args_cls: Any, **specific: Any) -> Any:
        """`args_cls` (TrainingArguments or a TRL config) from `training:`, the algorithm's own fields
        (`specific`) and `training.args`, whose names are checked against `args_cls`."""
        t = self.config.training
        kwargs: dict[str, Any] = {
            "output_dir": str(self.out_dir),
            "learning_rate": t.learning_rate,
            "num_train_epochs": t.num_train_epochs,
            "max_steps": t.max_steps,
            "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps,
            "warmup_steps": t.warmup_steps,
            "lr_scheduler_type": t.lr_scheduler_type,
            "weight_decay": t.weight_decay,
            "max_grad_norm": t.max_grad_norm,
            "logging_steps": t.logging_steps,
            "save_steps": t.save_steps,
            "save_total_limit": t.save_total_limit,
            "seed": t.seed,
            "bf16": self.bf16,
            "gradient_checkpointing": t.gradient_checkpointing,
            "report_to": "none",
            "disable_tqdm": True,
            **specific,
        }
        known = {f.name for f in dataclasses.fields(args_cls)}
        unknown = sorted(set(t.args) - known)
        if unknown:
            raise UserError(
                f"unknown field(s) {', '.join(unknown)}: not safepref settings nor {args_cls.__name__} fields"
                " (TRL's fields go at the top level or under training.args)"
            )
        kwargs.update(t.args)
        try:
            return args_cls(**kwargs)
        except (ValueError, TypeError) as exc:
            raise UserError(f"training: {str(exc).splitlines()[0]}") from None

    def trl_trainer(self, trainer_cls: Any, args: Any, rows: list[dict[str, Any]]) -> Any:
        """A TRL trainer on `rows`; with `lora:` TRL wraps the model in a fresh adapter."""
        from datasets import Dataset

        from trainers.model import lora_config

        return trainer_cls(
            model=self.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=self.tokenizer,
            peft_config=lora_config(self.config.lora),
        )


def message_dicts(messages: Iterable[BaseModel]) -> list[dict[str, str]]:
    """Chat messages of a conversational record as TRL's plain dicts."""
    return [m.model_dump() for m in messages]
