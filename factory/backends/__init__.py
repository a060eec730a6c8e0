"""LLM backends: `create_backend(spec)` turns a recipe's `BackendSpec` into a `Backend`.

Each backend module imports its heavy dependencies (torch, transformers, vllm) only when created.
"""

from __future__ import annotations

from factory.backends.base import Backend, ChatRequest, Completion
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
    if spec.kind == "vllm":
        from factory.backends.vllm_backend import VLLMBackend

        return VLLMBackend(spec)
    raise AssertionError(f"unhandled backend kind {spec.kind!r}")  # BackendSpec.kind is a Literal
