"""What a finished run says about its model: `training_summary.json` (the loss curve and where the data
came from), `train_config.resolved.yaml`, `README.md` (the model card) and the loss line it prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from trainers.config import TrainConfig
from trainers.data import TrainingDataset

SUMMARY_FILE = "training_summary.json"
CONFIG_FILE = "train_config.resolved.yaml"


def training_summary(
    cfg: TrainConfig, trainer: Any, base_model: str, data: TrainingDataset, algorithm_fields: dict[str, Any]
) -> dict[str, Any]:
    """The run's facts: algorithm, base model, steps, the logged losses, the dataset, the algorithm's own."""
    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    return {
        "algorithm": cfg.algorithm,
        "base_model": base_model,
        "lora": cfg.lora is not None,
        "steps": trainer.state.global_step,
        "loss_start": losses[0] if losses else None,
        "loss_end": losses[-1] if losses else None,
        # single logged steps on tiny batches are noisy: also the means of the first and last third
        "loss_first_third_mean": _third_mean(losses, first=True),
        "loss_last_third_mean": _third_mean(losses, first=False),
        "losses": losses,
        **data.card_fields(),
        **algorithm_fields,
    }


def write_run_files(
    out_dir: Path, cfg: TrainConfig, summary: dict[str, Any], card_section: list[str]
) -> None:
    """training_summary.json, train_config.resolved.yaml and README.md into `out_dir`."""
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / CONFIG_FILE).write_text(
        yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    (out_dir / "README.md").write_text(model_card(cfg, summary, card_section), encoding="utf-8")


def model_card(cfg: TrainConfig, summary: dict[str, Any], card_section: list[str]) -> str:
    """README.md for the output: base model, dataset + revision + recipe hash, settings, loss start/end,
    then the algorithm's own section (`card_section`) and the config's notes."""
    header: dict[str, Any] = {
        "base_model": summary["base_model"],
        "library_name": "peft" if summary["lora"] else "transformers",
        "tags": ["safepref", cfg.algorithm, "trl"],
    }
    if not Path(str(summary["dataset"])).exists():
        header["datasets"] = [summary["dataset"]]
    settings = cfg.algorithm_settings().model_dump(mode="json")
    lines = [
        "---",
        yaml.safe_dump(header, sort_keys=False).strip(),
        "---",
        "",
        f"# {cfg.algorithm.upper()} fine-tune of {summary['base_model']} (safepref)",
        "",
        "| | |",
        "|---|---|",
        f"| base model | `{summary['base_model']}` |",
        f"| output | {'LoRA adapter (load with PEFT)' if summary['lora'] else 'full model'} |",
        f"| dataset | `{summary['dataset']}` config `{summary['dataset_config']}` ({summary['record_schema']}) |",
        f"| dataset revision | `{_dataset_revision(summary)}` |",
        f"| recipe | `{summary['recipe_name']}` v{summary['recipe_version']}, hash `{summary['recipe_hash']}` |",
        f"| steps | {summary['steps']} |",
        f"| loss start → end | {_fmt(summary['loss_start'])} → {_fmt(summary['loss_end'])} |",
        "",
        f"## {cfg.algorithm} settings",
        "",
        "```yaml",
        yaml.safe_dump(settings, sort_keys=False).strip(),
        "```",
        "",
        "The full resolved config is in `train_config.resolved.yaml`; the loss curve in `training_summary.json`.",
        "",
        *card_section,
    ]
    if cfg.notes:
        lines += ["## Notes", ""] + [f"- `{k}`: {v}" for k, v in cfg.notes.items()] + [""]
    return "\n".join(lines)


def loss_line(summary: dict[str, Any]) -> str | None:
    """The console's line on the loss curve (rich markup); None when no loss was logged."""
    losses = summary["losses"]
    if not losses:
        return None
    return (
        f"[bold]{summary['algorithm']}[/bold] loss: start {losses[0]:.4f} → end {losses[-1]:.4f} ({len(losses)} logged steps;"
        f" mean of first/last third {_fmt(summary['loss_first_third_mean'])} → {_fmt(summary['loss_last_third_mean'])})"
    )


def _dataset_revision(summary: dict[str, Any]) -> str:
    if summary["dataset_revision"]:
        return str(summary["dataset_revision"])
    return (
        "local folder"
        if Path(summary["dataset"]).is_dir()
        else "main (not resolved: the Hub was unreachable)"
    )


def _third_mean(losses: list[float], *, first: bool) -> float | None:
    if not losses:
        return None
    n = max(1, len(losses) // 3)
    part = losses[:n] if first else losses[-n:]
    return sum(part) / len(part)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
