"""In-process vLLM (optional extra). Prompts are rendered here (chat.render_prompt) and passed as token
ids, so prefill behaves exactly as in the other backends and no second BOS is added."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from factory.backends import bundled_model
from factory.backends.base import (
    EMPTY_COMPLETION,
    ChatRequest,
    Completion,
    failed,
    message_problem,
    request_seed,
    truncate_at_stop,
)
from factory.backends.chat import TemplateMismatch, render_prompt
from factory.errors import UserError
from schemas.generation import BackendSpec, GenerationParams

INSTALL_HINT = (
    "the `vllm` backend needs vllm: pip install 'safepref[vllm]' (it pins its own torch/transformers, so a "
    "separate environment running `vllm serve` with `kind: openai` is usually simpler)"
)


class VLLMBackend:
    """`kind: vllm`, against vLLM's own `LLM` / `SamplingParams` API."""

    def __init__(self, spec: BackendSpec) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise UserError(INSTALL_HINT, where="backend") from exc
        bundled = spec.model == "bundled"
        source = str(bundled_model.bundled_model_dir()) if bundled else spec.model
        self.model_id = bundled_model.MODEL_ID if bundled else spec.model
        self.revision = bundled_model.REVISION if bundled else spec.revision
        self.spec = spec
        self._llm: Any = vllm.LLM(
            model=source,
            tokenizer=spec.tokenizer,
            revision=None if bundled else spec.revision,
            trust_remote_code=spec.trust_remote_code,
            dtype=spec.dtype,
            max_num_seqs=spec.batch_size,
            tensor_parallel_size=spec.tensor_parallel_size,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            # worker processes, not a Ray placement group: it also works inside a Ray actor
            distributed_executor_backend="mp" if spec.tensor_parallel_size > 1 else None,
        )
        self._tokenizer = self._llm.get_tokenizer()
        self._context = self._llm.llm_engine.model_config.max_model_len

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        todo: list[int] = []
        prompts: list[dict[str, list[int]]] = []
        sampling: list[Any] = []
        for i, request in enumerate(requests):
            problem = message_problem(request.messages)
            if problem is None:
                try:
                    prompt = render_prompt(
                        self._tokenizer, request.messages, continue_final=not request.close_final_turn
                    )
                except TemplateMismatch as exc:
                    problem = str(exc)
            if problem is not None:
                results[i] = failed(problem)
                continue
            ids = self._tokenizer.encode(prompt, add_special_tokens=False)
            if len(ids) + request.params.max_new_tokens > self._context:
                results[i] = failed(
                    f"prompt + max_new_tokens exceeds the context ({self._context})", None, len(ids)
                )
                continue
            todo.append(i)
            prompts.append({"prompt_token_ids": ids})
            params = request.params
            sampling.append(
                _sampling_params(params, None if params.seed is None else request_seed(params.seed, prompt))
            )
        if todo:
            outputs = self._llm.generate(prompts, sampling_params=sampling, use_tqdm=False)
            for i, output in zip(todo, outputs, strict=True):
                results[i] = _completion(output, requests[i].params)
        return [c for c in results if c is not None]

    def close(self) -> None:
        self._llm = None


def _sampling_params(params: GenerationParams, seed: int | None) -> Any:
    from vllm import SamplingParams

    extra: dict[str, Any] = {}
    if params.top_k is not None:
        extra["top_k"] = params.top_k
    if params.repetition_penalty is not None:
        extra["repetition_penalty"] = params.repetition_penalty
    return SamplingParams(
        n=1,
        temperature=params.temperature,
        top_p=params.top_p,
        max_tokens=params.max_new_tokens,
        stop=list(params.stop) or None,
        seed=seed,
        **extra,
    )


def _completion(output: Any, params: GenerationParams) -> Completion:
    result = output.outputs[0]
    text, stopped = truncate_at_stop(result.text, params.stop)
    completion = Completion(
        text=text,
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=len(result.token_ids),
        finish_reason="stop" if stopped else result.finish_reason,
    )
    if not text.strip():
        completion.error = EMPTY_COMPLETION
    return completion
