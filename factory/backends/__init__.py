"""LLM backends: `create_backend(spec)` turns a recipe's `BackendSpec` into a `Backend`.

Each backend module imports its heavy dependencies (torch, transformers) only when created. In a run,
`transformers` and `vllm` backends are served by one managed server each (`managed_server`) and the
stages talk to it through the `openai` backend; the in-process transformers backend serves library
use (evaluation, adapters, benchmarks).
"""

from __future__ import annotations

from factory.backends.base import Backend, ChatRequest, Completion
from factory.core.errors import UserError
from schemas.generation import BackendSpec

__all__ = ["Backend", "ChatRequest", "Completion", "create_backend"]


def create_backend(spec: BackendSpec) -> Backend:
    """A ready backend for `spec`; misconfiguration (unknown model, bad URL, missing extra) raises."""
    if spec.kind == "transformers":
        from factory.backends.transformers_backend import TransformersBackend

        return TransformersBackend(spec)
    if spec.kind == "openai":
        from factory.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(spec)
    if spec.kind == "vllm":  # vLLM pins its own torch/transformers: it runs as `vllm serve`, never here
        raise UserError(
            "a `vllm` backend is served by `vllm serve`, which `safepref run` starts (managed_server); "
            "elsewhere start it yourself and use kind: openai",
            where="backend",
        )
    raise AssertionError(f"unhandled backend kind {spec.kind!r}")  # BackendSpec.kind is a Literal
