"""In-process generation with transformers: batched, left-padded, per-request seeded sampling."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.backends.base import (
    ChatRequest,
    Completion,
    failed,
    message_problem,
    truncate_at_stop,
)
from factory.backends.chat import TemplateMismatch, render_prompt
from factory.core.errors import UserError
from factory.core.models import load_source, model_id, model_revision
from factory.core.seeds import prompt_seed
from schemas.generation import BackendSpec, GenerationParams, names_local_folder

_DECODE_CONTEXT = 4  # prompt tokens decoded with the new ones so word-boundary spaces survive detokenising


class TransformersBackend:
    """`kind: transformers`. Requests with equal decoding settings share left-padded batches."""

    model_id: str
    revision: str | None
    model: Any
    tokenizer: Any

    def __init__(self, spec: BackendSpec) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            torch.set_num_threads(int(threads))
        self.spec = spec
        source = _resolve_source(load_source(spec.model))
        revision = spec.revision
        self.model_id = model_id(spec.model)
        self.revision = model_revision(spec.model, spec.revision)
        tokenizer_source = spec.tokenizer or source
        self.device = spec.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                tokenizer_source,
                revision=revision if tokenizer_source == source else None,
                trust_remote_code=spec.trust_remote_code,
            )
            model: Any = AutoModelForCausalLM.from_pretrained(
                source,
                revision=revision,
                trust_remote_code=spec.trust_remote_code,
                dtype=_dtype(spec.dtype, self.device),
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load model {spec.model!r}: {str(exc).splitlines()[0]}", where="backend"
            ) from exc
        self.model = model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._eos_ids = _eos_ids(self.model, self.tokenizer)
        self._context = getattr(self.model.config, "max_position_embeddings", None)
        self._lock = threading.Lock()  # generate() may be called from server threads

    def __repr__(self) -> str:
        return f"TransformersBackend(model_id={self.model_id!r}, device={self.device!r})"

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        prompts: list[str | None] = []
        results: list[Completion | None] = [None] * len(requests)
        for i, request in enumerate(requests):
            problem = message_problem(request.messages)
            if problem is None:
                try:
                    prompts.append(
                        render_prompt(
                            self.tokenizer, request.messages, continue_final=not request.close_final_turn
                        )
                    )
                    continue
                except TemplateMismatch as exc:
                    problem = str(exc)
            prompts.append(None)
            results[i] = failed(problem)
        todo = [i for i, p in enumerate(prompts) if p is not None]
        done = self.generate_text([prompts[i] or "" for i in todo], [requests[i].params for i in todo])
        for i, completion in zip(todo, done, strict=True):
            results[i] = completion
        return [c for c in results if c is not None]

    def generate_text(self, prompts: Sequence[str], params: Sequence[GenerationParams]) -> list[Completion]:
        """Complete already-rendered prompts (they carry their special tokens), in input order."""
        with self._lock:
            encoded = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
            results: list[Completion | None] = [None] * len(prompts)
            groups: dict[tuple[Any, ...], list[int]] = {}
            for i, (ids, p) in enumerate(zip(encoded, params, strict=True)):
                if self._context is not None and len(ids) + p.max_new_tokens > self._context:
                    results[i] = failed(
                        f"prompt ({len(ids)} tokens) + max_new_tokens ({p.max_new_tokens}) exceeds the "
                        f"model context ({self._context})",
                        prompt_tokens=len(ids),
                    )
                    continue
                groups.setdefault(_batch_key(p), []).append(i)
            for members in groups.values():
                members.sort(key=lambda i: len(encoded[i]), reverse=True)  # similar lengths pad little
                for start in range(0, len(members), self.spec.batch_size):
                    batch = members[start : start + self.spec.batch_size]
                    seeds = [_seed(params[i], prompts[i]) for i in batch]
                    done = self._generate_batch(
                        [encoded[i] for i in batch], [params[i] for i in batch], seeds
                    )
                    for i, completion in zip(batch, done, strict=True):
                        results[i] = completion
            return [c for c in results if c is not None]

    def _generate_batch(
        self, encoded: list[list[int]], params: list[GenerationParams], seeds: list[int | None]
    ) -> list[Completion]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        first = params[0]
        padded = self.tokenizer.pad({"input_ids": encoded}, return_tensors="pt").to(self.device)
        stops = [s for s in first.stop if s]
        config = GenerationConfig(
            max_new_tokens=first.max_new_tokens,
            do_sample=False,  # sampling, when asked for, happens in _SeededSampler (per-request RNG)
            repetition_penalty=first.repetition_penalty,
            num_beams=first.num_beams or 1,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(self._eos_ids),
            stop_strings=stops or None,
        )
        processors = LogitsProcessorList()
        if first.temperature > 0:
            processors.append(_SeededSampler(seeds, first, self.device))
        with torch.inference_mode():
            output = self.model.generate(
                **padded,
                generation_config=config,
                logits_processor=processors,
                tokenizer=self.tokenizer if stops else None,
            )
        width = padded["input_ids"].shape[1]
        return [
            self._completion(ids, output[row, width:].tolist(), p)
            for row, (ids, p) in enumerate(zip(encoded, params, strict=True))
        ]

    def _completion(self, prompt_ids: list[int], new_ids: list[int], params: GenerationParams) -> Completion:
        end = next((k for k, t in enumerate(new_ids) if t in self._eos_ids), None)
        kept = new_ids if end is None else new_ids[:end]
        text, stopped = truncate_at_stop(self._decode_new(prompt_ids[-_DECODE_CONTEXT:], kept), params.stop)
        finish = "stop" if end is not None or stopped or len(kept) < params.max_new_tokens else "length"
        return Completion(
            text=text,
            prompt_tokens=len(prompt_ids),
            completion_tokens=len(kept) + (end is not None),
            finish_reason=finish,
        )

    def _decode_new(self, context: list[int], new_ids: list[int]) -> str:
        # Decoding the new tokens alone loses a leading space with SentencePiece tokenizers; decode them
        # after a few prompt tokens and keep what they added.
        before = str(self.tokenizer.decode(context, skip_special_tokens=True))
        both = str(self.tokenizer.decode(context + new_ids, skip_special_tokens=True))
        if both.startswith(before):
            return both[len(before) :]
        return str(self.tokenizer.decode(new_ids, skip_special_tokens=True))

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()


class _SeededSampler:
    """Samples each row with its own generator (seeded by `prompt_seed`) and forces that token.

    Generation then runs greedily over the forced logits, so a seeded request gets the same text
    whatever else shares its batch.
    """

    def __init__(self, seeds: list[int | None], params: GenerationParams, device: str) -> None:
        import torch
        from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        self.generators = []
        for seed in seeds:
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
            self.generators.append(generator)
        self.warpers: list[Any] = [TemperatureLogitsWarper(params.temperature)]
        if params.top_k is not None:
            self.warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            self.warpers.append(TopPLogitsWarper(params.top_p))

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        for warper in self.warpers:
            scores = warper(input_ids, scores)
        probs = torch.softmax(scores.float(), dim=-1)
        chosen = torch.cat(
            [torch.multinomial(probs[row], 1, generator=g) for row, g in enumerate(self.generators)]
        )
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(len(chosen), device=scores.device), chosen] = 0.0
        return forced


def _seed(params: GenerationParams, prompt: str) -> int | None:
    return None if params.seed is None else prompt_seed(params.seed, prompt)


def _batch_key(params: GenerationParams) -> tuple[Any, ...]:
    # the seed is per row; everything else must match to share one generate() call (stop strings too:
    # one row's stop string would otherwise end another row early)
    return (
        params.max_new_tokens,
        params.temperature,
        params.top_p,
        params.top_k,
        params.repetition_penalty,
        params.num_beams,
        tuple(sorted(params.stop)),
    )


def _resolve_source(model: str) -> str:
    path = Path(model).expanduser()
    if path.exists():
        return str(path)
    if names_local_folder(model):
        raise UserError(f"model folder {model!r} does not exist", where="backend")
    return model  # a Hub id


def _dtype(name: str, device: str) -> Any:
    import torch

    if name != "auto":
        return getattr(torch, name)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls are slow on most CPUs


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
