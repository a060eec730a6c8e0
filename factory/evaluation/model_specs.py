"""`--model` / `--judge` values → backends of the factory (`factory.backends`).

Forms:
- `bundled`                         the embedded SmolLM2-135M-Instruct
- `PATH`                            a local model folder (config.json), or a PEFT adapter folder
                                    (adapter_config.json: its `base_model_name_or_path` with the
                                    adapter merged into it, `merged_adapter`)
- `ORG/NAME[@REVISION]`             a Hub model id
- `openai:BASE_URL@MODEL_NAME`      an OpenAI-compatible server you run (`vllm serve` for real runs),
                                    e.g. `openai:http://127.0.0.1:8000/v1@Qwen/Qwen2-7B-Instruct`
All but `openai:` are served by a managed server the runner starts (`evaluation.serving`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from factory.backends import Backend, create_backend
from factory.core.errors import UserError
from factory.core.hashing import folder_fingerprint
from schemas.eval_report import ModelInfo
from schemas.generation import MAX_CONCURRENCY, BackendSpec, GenerationParams, url_problem

if TYPE_CHECKING:
    from factory.evaluation.serving import EvalServers

ModelKind = Literal["bundled", "folder", "adapter", "hub", "openai"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PATH_LIKE = ("/", "./", "../", "~")
OPENAI_KEY_ENV: str = BackendSpec.model_fields["api_key_env"].default  # an openai: model's key


@dataclass(frozen=True)
class ModelRef:
    spec: str
    kind: ModelKind
    target: str  # folder path, Hub id or served model name
    revision: str | None = None
    base_url: str | None = None


@dataclass(frozen=True)
class BackendOptions:
    """How the model servers and their clients are set up (not part of what is measured).

    `server`: what serves local models (`transformers serve`, `vllm serve`, SGLang); `server_command`
    replaces its default command (a server in its own environment), `server_args` are appended to it.
    `max_concurrency`: requests in flight on each server or endpoint. `prefill_mode`: for `openai:`
    models only (managed servers always get prompts rendered here)."""

    server: Literal["transformers", "vllm", "sglang"] = "transformers"
    server_command: tuple[str, ...] | None = None
    server_args: tuple[str, ...] = ()
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    prefill_mode: Literal["continue_final_message", "completions"] = "continue_final_message"
    max_concurrency: int = 16
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # --device would otherwise be dropped: vLLM removed its `--device` (0.10; it runs on the GPUs
        # CUDA_VISIBLE_DEVICES shows); SGLang's `--device` names a device type (cuda, npu, cpu), not
        # transformers serve's device, so it is the server's own argument
        if self.device is not None and self.server != "transformers":
            how = {
                "vllm": "vllm serve has no device flag: choose GPUs with CUDA_VISIBLE_DEVICES",
                "sglang": "for SGLang's own device type pass --server-arg=--device=TYPE",
            }[self.server]
            raise UserError(f"--device applies to --server transformers; {how}")
        if not 1 <= self.max_concurrency <= MAX_CONCURRENCY:
            raise UserError(f"--concurrency {self.max_concurrency}: use 1 to {MAX_CONCURRENCY}")


def parse_model_spec(spec: str, *, option: str = "--model") -> ModelRef:
    text = spec.strip()
    if not text:
        raise UserError(f"{option}: empty value")
    if text == "bundled":
        return ModelRef(text, "bundled", "bundled")
    if text.startswith("openai:"):
        # checked here, before anything is written: a URL may hold a token, so no message repeats it
        url, sep, name = text.removeprefix("openai:").rpartition("@")
        if not sep or not url or not name:
            raise UserError(
                f"{option} openai:…: write openai:BASE_URL@MODEL_NAME (e.g. openai:http://127.0.0.1:8000/v1@my-model)"
            )
        try:
            url_problem(url, key_hint=f"${OPENAI_KEY_ENV}")
        except ValueError as exc:
            raise UserError(f"{option} openai:BASE_URL@{name}: {exc}") from None
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
    from factory.core.models import model_id, model_revision

    if ref.kind == "openai":
        return ModelInfo(spec=ref.spec, slug=slug, kind="openai", model_id=ref.target, endpoint=ref.base_url)
    if ref.kind == "adapter":
        from factory.evaluation.merged_adapter import adapter_base

        base, revision = adapter_base(Path(ref.target))
        return ModelInfo(
            spec=ref.spec,
            slug=slug,
            kind="adapter",
            model_id=str(Path(ref.target).resolve()),
            base_model=model_id(base),
            revision=model_revision(base, revision),
            fingerprint=folder_fingerprint(Path(ref.target)),
        )
    if ref.kind == "bundled":
        return ModelInfo(
            spec=ref.spec,
            slug=slug,
            kind="bundled",
            model_id=model_id("bundled"),
            revision=model_revision("bundled", None),
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


def served_spec(ref: ModelRef, options: BackendOptions, work_dir: Path) -> BackendSpec:
    """The managed server that serves `ref` (not `openai:`): `options.server` loads the bundled model,
    the folder, the Hub id, or the adapter merged into a folder under `work_dir` (`merged_adapter`)."""
    if ref.kind == "openai":
        raise AssertionError("an openai: model is served by its own endpoint")
    if ref.kind == "adapter":
        from factory.evaluation.merged_adapter import merged_dir

        model = str(merged_dir(Path(ref.target), work_dir))
    else:
        model = "bundled" if ref.kind == "bundled" else ref.target
    fields: dict[str, Any] = {
        "kind": options.server,
        "model": model,
        "revision": ref.revision,
        "dtype": options.dtype,
        "max_concurrency": options.max_concurrency,
        "timeout_s": options.timeout_s,
        "server_args": list(options.server_args),
    }
    if options.server_command:
        fields["server_command"] = list(options.server_command)
    if options.device:  # transformers only (BackendOptions)
        fields["device"] = options.device
    return BackendSpec.model_validate(fields)


def open_backend(
    ref: ModelRef,
    options: BackendOptions,
    servers: EvalServers,
    sampling: GenerationParams,
    name: str,
    option: str = "--model",
) -> Backend:
    """A client for `ref`: its own endpoint for `openai:`, else a managed server that `servers` starts
    (stopping the one it ran before), named `name` in its log file. `sampling`: what the requests will
    ask for (a transformers server is pinned to it); `option`: what asked for the model (in errors)."""
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
    prepare = None
    if ref.kind == "adapter":
        from factory.evaluation.merged_adapter import ensure_merged

        def prepare() -> None:  # after the previous server stopped: the merge loads the weights once
            ensure_merged(Path(ref.target), servers.work_dir)

    spec = served_spec(ref, options, servers.work_dir)
    return servers.client(name, spec, sampling, prepare, where=f"{option} {ref.spec}")
