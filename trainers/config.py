"""Training config: one YAML file (or a built-in name), validated by pydantic, with `--set a.b=c` overrides.

Pure: no torch import. Built-in configs live in `trainers/configs/<name>.yaml`.

Every value has one place. TRL's own names are accepted where TRL puts them, at the top level (a
`trl dpo --config` YAML: `beta: 0.1`, `learning_rate: ...`, `model_name_or_path: ...`), and are
moved to their safepref place (`dpo.beta`, `training.learning_rate`, `model`); other top-level names
go to `training.args`, which the trainer checks against TRL's config class. Setting one value in
two places (`beta` and `dpo.beta`, or `training.args.beta` and `dpo.beta`) is an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from factory.core.errors import UserError
from schemas.generation import BUNDLED_HAS_NO_REVISION
from trainers.algorithms import ALGORITHMS

CONFIG_DIR = Path(__file__).parent / "configs"
# Accelerate launcher configs share the folder but are not training configs.
_LAUNCHER_PREFIX = "accelerate-"


class LoraSettings(BaseModel):
    """PEFT LoRA; the saved output is then an adapter whose base model is recorded in adapter_config.json."""

    model_config = ConfigDict(extra="forbid")
    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class TrainingSettings(BaseModel):
    """The usual `transformers.TrainingArguments`; `args` passes any other field through verbatim."""

    model_config = ConfigDict(extra="forbid")
    learning_rate: float = Field(default=5e-6, gt=0)
    num_train_epochs: float = Field(default=1.0, gt=0)
    max_steps: int = -1
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    warmup_steps: float = Field(default=0.0, ge=0)
    lr_scheduler_type: str = "linear"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: float = 1
    save_steps: float = 500
    save_total_limit: int | None = 2
    seed: int = 42
    bf16: Literal["auto"] | bool = "auto"
    gradient_checkpointing: bool = False
    max_length: int | None = Field(default=1024, ge=8)
    resume_from_checkpoint: str | bool | None = None
    args: dict[str, Any] = Field(default_factory=dict, description="extra TrainingArguments fields")


class TrainConfigBase(BaseModel):
    """One training run: the fields every algorithm shares. `dataset`, `model` and `out` can also come
    from the command line. `TrainConfig` adds one section per algorithm (`dpo:`, `kto:`, `ptalign:`)."""

    model_config = ConfigDict(extra="forbid")
    algorithm: str = Field(description="the training algorithm, a name in trainers.algorithms.ALGORITHMS")
    model: str = Field(default="bundled", description="path, Hub id, or `bundled` (SmolLM2-135M-Instruct)")
    model_revision: str | None = None
    dataset: str | None = Field(
        default=None, description="dataset folder, or Hub repo id with optional @revision"
    )
    dataset_config: str | None = Field(
        None, description="config inside the dataset (default: the manifest's)"
    )
    split: str = "train"
    out: str | None = Field(
        default=None, description="output folder for the model or adapter (unset: runs/<config name>)"
    )
    chat_template: str | None = Field(default=None, description="Jinja template for models that ship none")
    lora: LoraSettings | None = None
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    notes: dict[str, str] = Field(default_factory=dict, description="provenance of values (paper / unknown)")

    @model_validator(mode="after")
    def _bundled_has_no_revision(self) -> TrainConfigBase:
        if self.model == "bundled" and self.model_revision is not None:
            raise ValueError(BUNDLED_HAS_NO_REVISION.format(field="model_revision"))
        return self

    def algorithm_settings(self) -> BaseModel:
        """The section of the algorithm this run uses (`dpo:` for `algorithm: dpo`)."""
        section = getattr(self, self.algorithm)
        assert isinstance(section, BaseModel), self.algorithm
        return section


def _with_algorithm_sections() -> type[TrainConfigBase]:
    """`TrainConfigBase` with `algorithm` limited to the registered names and each one's section."""
    names: Any = Literal[tuple(ALGORITHMS)]
    fields: dict[str, Any] = {
        name: (a.settings, Field(default_factory=a.settings)) for name, a in ALGORITHMS.items()
    }
    return create_model(
        "TrainConfig",
        __base__=TrainConfigBase,
        __doc__=TrainConfigBase.__doc__,
        algorithm=(names, TrainConfigBase.model_fields["algorithm"]),
        **fields,
    )


# A type checker sees the shared fields; an algorithm reads its section through TrainingRun.settings.
if TYPE_CHECKING:
    TrainConfig = TrainConfigBase
else:
    TrainConfig = _with_algorithm_sections()


def builtin_configs() -> list[str]:
    """Names of the training configs that ship with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith(_LAUNCHER_PREFIX))


def resolve_config_path(config: str) -> Path:
    """A path to a YAML file, or the name of a built-in config."""
    path = Path(config)
    if path.is_file():
        return path
    if config in builtin_configs():
        return CONFIG_DIR / f"{config}.yaml"
    raise UserError(
        f"training config {config!r} is neither a file nor a built-in ({', '.join(builtin_configs())})"
    )


# TRL's names (ScriptArguments, ModelConfig) for values that safepref keeps elsewhere.
_TRL_NAMES: dict[str, tuple[str, ...]] = {
    "model_name_or_path": ("model",),
    "dataset_name": ("dataset",),
    "dataset_train_split": ("split",),
    "output_dir": ("out",),
    "lora_r": ("lora", "r"),
    "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"),
    "lora_target_modules": ("lora", "target_modules"),
}
_TOP_LEVEL = frozenset(TrainConfig.model_fields)
_TRAINING = frozenset(TrainingSettings.model_fields) - {"args"}
_SECTIONS: dict[str, type[BaseModel]] = {n: a.settings for n, a in ALGORITHMS.items() if a.trl_names}


def _place(name: str, algorithm: Any) -> tuple[str, ...] | None:
    """Where safepref keeps the value TRL calls `name` (None: nowhere, it stays a TRL argument)."""
    if name in _TRL_NAMES:
        return _TRL_NAMES[name]
    if name in _TRAINING:
        return ("training", name)
    section = _SECTIONS.get(algorithm) if isinstance(algorithm, str) else None
    if section is not None and name in section.model_fields:
        return (str(algorithm), name)
    return None


def _one_place(data: dict[str, Any], where: Path) -> None:
    """Move TRL-style values to their safepref place; a value set in two places is an error."""
    algorithm = data.get("algorithm")
    training = data.get("training") if isinstance(data.get("training"), dict) else None
    extra = training.get("args") if training is not None and isinstance(training.get("args"), dict) else None
    spelled: list[tuple[str, str, Any]] = []  # (how the user spelled it, TRL's name, value)
    for name in [k for k in data if k not in _TOP_LEVEL and k != "use_peft"]:
        spelled.append((name, name, data.pop(name)))
    for name in [k for k in (extra or {}) if _place(k, algorithm) is not None]:
        spelled.append((f"training.args.{name}", name, extra.pop(name)))  # type: ignore[union-attr]
    if "use_peft" in data:  # TRL's switch for LoRA: on = safepref's defaults unless lora_* say more
        use_peft = data.pop("use_peft")
        if use_peft and data.get("lora") is None:
            data["lora"] = {}
        elif not use_peft and data.get("lora") is not None:
            raise UserError(f"{where}: `use_peft: false` and `lora` both set LoRA; keep one")
    for spelling, name, value in spelled:
        place = _place(name, algorithm) or ("training", "args", name)
        node = data
        for key in place[:-1]:
            if node.get(key) is None:  # e.g. `lora: null` with `lora_r: 8`: the TRL name turns LoRA on
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise UserError(f"{where}: {'.'.join(place[:-1])} must be a mapping to hold `{spelling}`")
        if place[-1] in node:
            raise UserError(f"{where}: `{spelling}` and `{'.'.join(place)}` both set {name}; keep one")
        node[place[-1]] = value


def load_config(config: str, overrides: list[str] | None = None) -> tuple[TrainConfig, Path]:
    """Read, override and validate a training config; returns it with the file it came from."""
    from factory.core.config_files import apply_override, format_validation_error, read_yaml

    path = resolve_config_path(config)
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    for item in overrides or []:
        apply_override(data, item)
    _one_place(data, path)
    try:
        return TrainConfig.model_validate(data), path
    except ValidationError as exc:
        raise UserError(f"{path}: {format_validation_error(exc)}") from None


def run_config(
    config: str,
    overrides: list[str] | None = None,
    *,
    dataset: str | None = None,
    model: str | None = None,
    out: str | None = None,
) -> tuple[TrainConfig, Path]:
    """The config of one run (the file, its `--set` overrides, then `dataset`, `model` and `out` where
    given) and the folder it writes to; refuses what would fail only after the model has loaded."""
    cfg, path = load_config(config, overrides)
    given = {"dataset": dataset, "model": model, "out": out}
    cfg = cfg.model_copy(update={k: v for k, v in given.items() if v is not None})
    if cfg.dataset is None:
        raise UserError(f"{path}: no dataset: set `dataset:` or pass --dataset FOLDER_OR_REPO[@REVISION]")
    resume = cfg.training.resume_from_checkpoint
    if isinstance(resume, str) and not Path(resume).is_dir():
        raise UserError(f"training.resume_from_checkpoint: {resume} is not a checkpoint folder")
    return cfg, Path(cfg.out or f"runs/{path.stem}")
