"""`--model` / `--judge` values → backends of the factory (`factory.backends`).

Forms:
- `bundled`                         the embedded SmolLM2-135M-Instruct (transformers, in-process)
- `PATH`                            a local model folder (config.json), or a PEFT adapter folder
                                    (adapter_config.json: its `base_model_name_or_path` is loaded, the
                                    adapter applied and merged)
- `ORG/NAME[@REVISION]`             a Hub model id, loaded in-process with transformers
- `openai:BASE_URL@MODEL_NAME`      an OpenAI-compatible server (`vllm serve` for real runs), e.g.
                                    `openai:http://127.0.0.1:8000/v1@Qwen/Qwen2-7B-Instruct`
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from factory.backends import Backend, create_backend
from factory.core.errors import UserError
from factory.core.hashing import folder_fingerprint
from schemas.eval_report import ModelInfo
from schemas.generation import BackendSpec

ModelKind = Literal["bundled", "folder", "adapter", "hub", "openai"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PATH_LIKE = ("/", "./", "../", "~")


@dataclass(frozen=True)
class ModelRef:
    spec: str
    kind: ModelKind
    target: str  # folder path, Hub id or served model name
    revision: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class BackendOptions:
    """How in-process and HTTP backends are set up (not part of what is measured)."""

    batch_size: int = 16
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    prefill_mode: Literal["continue_final_message", "completions"] = "continue_final_message"
    max_concurrency: int = 16
    timeout_s: float = 120.0


def parse_model_spec(spec: str, *, option: str = "--model") -> ModelRef:
    text = spec.strip()
    if not text:
        raise UserError(f"{option}: empty value")
    if text == "bundled":
        return ModelRef(text, "bundled", "bundled")
    if text.startswith("openai:"):
        rest = text.removeprefix("openai:")
        url, sep, name = rest.rpartition("@")
        if not sep or not url or not name:
            raise UserError(
                f"{option} {spec!r}: write openai:BASE_URL@MODEL_NAME (e.g. openai:http://127.0.0.1:8000/v1@my-model)"
            )
        return ModelRef(text, "openai", name, base_url=url)
    path = Path(text).expanduser()
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return ModelRef(text, "adapter", str(path))
        if (path / "config.json").is_file():
            return ModelRef(text, "folder", str(path))
        raise UserError(f"{option} {spec!r}: folder has neither config.json nor adapter_config.json")
    if text.startswith(_PATH_LIKE) or path.exists():
        raise UserError(f"{option} {spec!r}: no such model folder")
    name, _, revision = text.partition("@")
    if not _HUB_ID.match(name):
        raise UserError(
            f"{option} {spec!r}: not `bundled`, a model folder, a Hub id (ORG/NAME[@REV]) or openai:URL@MODEL"
        )
    return ModelRef(text, "hub", name, revision=revision or None)


def model_slug(ref: ModelRef) -> str:
    """A folder-safe name for the per-model work folder."""
    if ref.kind == "bundled":
        raw = "bundled"
    elif ref.kind in ("folder", "adapter"):
        raw = Path(ref.target).resolve().name
    elif ref.kind == "hub":
        raw = ref.target.replace("/", "__") + (f"@{ref.revision[:12]}" if ref.revision else "")
    else:
        raw = "openai-" + ref.target.replace("/", "__")
    return re.sub(r"[^\w.@-]+", "_", raw).strip("._") or "model"


def unique_slugs(refs: list[ModelRef]) -> list[str]:
    slugs: list[str] = []
    for ref in refs:
        base = model_slug(ref)
        slug, n = base, 2
        while slug in slugs:
            slug, n = f"{base}-{n}", n + 1
        slugs.append(slug)
    return slugs


def describe_model(ref: ModelRef, slug: str) -> ModelInfo:
    """What the report records about a model (nothing is loaded)."""
    from factory.core import models as bundled_model

    if ref.kind == "openai":
        return ModelInfo(spec=ref.spec, slug=slug, kind="openai", model_id=ref.target, endpoint=ref.base_url)
    if ref.kind == "adapter":
        base, revision = _adapter_base(Path(ref.target))
        bundled = base in ("bundled", str(bundled_model.bundled_model_dir()))
        return ModelInfo(
            spec=ref.spec,
            slug=slug,
            kind="adapter",
            model_id=str(Path(ref.target).resolve()),
            base_model=bundled_model.MODEL_ID if bundled else base,
            revision=bundled_model.REVISION if bundled else revision,
            fingerprint=folder_fingerprint(Path(ref.target)),
        )
    if ref.kind == "bundled":
        return ModelInfo(
            spec=ref.spec,
            slug=slug,
            kind="bundled",
            model_id=bundled_model.MODEL_ID,
            revision=bundled_model.REVISION,
        )
    if ref.kind == "folder":
        return ModelInfo(
            spec=ref.spec,
            slug=slug,
            kind="folder",
            model_id=str(Path(ref.target).resolve()),
            fingerprint=folder_fingerprint(Path(ref.target)),
        )
    return ModelInfo(
        spec=ref.spec,
        slug=slug,
        kind="hub",
        model_id=ref.target,
        revision=_resolve_model(ref) or ref.revision,
    )


def _resolve_model(ref: ModelRef) -> str | None:
    """The commit a Hub model's revision (None = main) names now; None offline."""
    from huggingface_hub import HfApi

    try:
        sha = HfApi().model_info(ref.target, revision=ref.revision).sha
    except Exception:  # offline or unknown: the load reports real errors
        return None
    return str(sha) if sha else None


def open_backend(ref: ModelRef, options: BackendOptions) -> Backend:
    """A ready backend for `ref` (loads the model; misconfiguration raises UserError)."""
    if ref.kind == "openai":
        spec = BackendSpec.model_validate(
            {
                "kind": "openai",
                "base_url": ref.base_url,
                "model": ref.target,
                "prefill_mode": options.prefill_mode,
                "max_concurrency": options.max_concurrency,
                "timeout_s": options.timeout_s,
            }
        )
        return create_backend(spec)
    common: dict[str, Any] = {
        "batch_size": options.batch_size,
        "device": options.device,
        "dtype": options.dtype,
    }
    if ref.kind == "adapter":
        return _open_adapter(ref, common)
    model = "bundled" if ref.kind == "bundled" else ref.target
    spec = BackendSpec.model_validate(
        {"kind": "transformers", "model": model, "revision": ref.revision, **common}
    )
    return create_backend(spec)


def _adapter_base(folder: Path) -> tuple[str, str | None]:
    """(base model, revision) of an adapter folder; `bundled` when `safepref train` recorded that the
    bundled model was its base (`base_model.json`)."""
    try:
        recorded = json.loads((folder / "base_model.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        recorded = None
    if isinstance(recorded, dict) and recorded.get("model") == "bundled":
        return "bundled", None
    where = str(folder / "adapter_config.json")
    try:
        config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read adapter config: {exc}", where=where) from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise UserError("base_model_name_or_path is missing", where=where)
    revision = config.get("revision")
    return base, revision if isinstance(revision, str) else None


def _open_adapter(ref: ModelRef, common: dict[str, Any]) -> Backend:
    """Load the adapter's base model through the transformers backend, then apply and merge the adapter."""
    from peft import PeftModel

    from factory.core import models as bundled_model

    folder = Path(ref.target)
    base, revision = _adapter_base(folder)
    bundled = base in ("bundled", str(bundled_model.bundled_model_dir()))
    has_tokenizer = any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))
    spec = BackendSpec.model_validate(
        {
            "kind": "transformers",
            "model": "bundled" if bundled else base,
            "revision": revision,
            "tokenizer": str(folder) if has_tokenizer else None,
            **common,
        }
    )
    backend: Any = create_backend(spec)
    try:
        merged = PeftModel.from_pretrained(backend.model, str(folder)).merge_and_unload()
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot apply adapter: {str(exc).splitlines()[0]}", where=str(folder)) from None
    backend.model = merged.eval()
    backend.model_id, backend.revision = ref.spec, None
    return backend  # type: ignore[no-any-return]
