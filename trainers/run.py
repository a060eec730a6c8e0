"""`safepref train`: config + dataset + model -> a fine-tuned model (or LoRA adapter) with a model card.

One readable recipe (torchtune style), each line a call into the module for that job: the config
(config.py), the dataset (data.py), the model (model.py), the algorithm's trainer (algorithms/),
training (resuming if asked), saving, the card (card.py). Heavy libraries are imported inside those.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

from trainers.algorithms import ALGORITHMS
from trainers.algorithms.base import TrainingRun
from trainers.card import loss_line, training_summary, write_run_files
from trainers.config import run_config
from trainers.data import load_training_dataset
from trainers.model import load_model, save_model, use_bf16


def train(
    config: str,
    dataset: str | None = None,
    model: str | None = None,
    out: str | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Train per `config` (a YAML path or a built-in name); returns the output folder.

    `dataset`, `model` and `out` override the config's values; `overrides` are `key.path=value` strings.
    Raises `UserError` for anything the user can fix.
    """
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    cfg, out_dir = run_config(config, overrides, dataset=dataset, model=model, out=out)
    algorithm = ALGORITHMS[cfg.algorithm]
    data = load_training_dataset(str(cfg.dataset), algorithm.name, config=cfg.dataset_config, split=cfg.split)
    bf16 = use_bf16(cfg.training.bf16)
    policy, tokenizer, base_model = load_model(cfg, bf16=bf16)
    built = algorithm.build(TrainingRun(cfg, data, policy, tokenizer, base_model, out_dir, bf16))
    for warning in built.warnings:
        Console(stderr=True).print(f"[yellow]warning:[/yellow] {warning}")

    built.trainer.train(resume_from_checkpoint=cfg.training.resume_from_checkpoint)
    save_model(built.trainer, out_dir, cfg, base_model)
    if built.trainer.is_world_process_zero():
        summary = training_summary(cfg, built.trainer, base_model, data, built.summary)
        write_run_files(out_dir, cfg, summary, built.card)
        console = Console()
        if (line := loss_line(summary)) is not None:
            console.print(line)
        console.print(f"saved to {out_dir}")
    return out_dir
