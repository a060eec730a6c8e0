"""LLM backends: `create_backend(spec)` turns a recipe's `BackendSpec` into a `Backend`.

Each backend module imports its heavy dependencies (torch, transformers) only when created. In a run
and in an evaluation, `transformers`, `vllm` and `sglang` backends are served by one managed server
each (`managed_server`) and the stages talk to it through the `openai` backend; the in-process
transformers backend stays for library use (the benchmarks' raw baseline, tests).
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
    if spec.kind in ("vllm", "sglang"):  # they pin their own torch/transformers: served, never here
        raise UserError(
            f"a `{spec.kind}` backend is served by its own server, which `safepref run` and `safepref eval` "
            "start (managed_server); elsewhere start it yourself and use kind: openai",
            where="backend",
        )
    raise AssertionError(f"unhandled backend kind {spec.kind!r}")  # BackendSpec.kind is a Literal
