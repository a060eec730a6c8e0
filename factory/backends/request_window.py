"""How many rows an LLM stage takes per distilabel batch, so that batches do not cap throughput.

distilabel hands a step its next batch only after the step returned the previous one, so every batch
ends by draining the backend's window: its slowest requests finish while the other slots sit idle
(with 256 in flight and ~2 s requests, batches of 256 rows kept only 0.74 of the slots busy). A stage
that calls a server therefore takes at least WINDOW_ROUNDS windows' worth of rows per batch (all of
them in any but a paper-scale run); inside a batch the backend refills each slot as its answer arrives,
so one drain costs a small share of the batch. Resuming does not depend on the batch: the request
cache stores every answer as it arrives.
"""

from __future__ import annotations

from schemas.generation import BackendSpec

WINDOW_ROUNDS = 100  # a drain lasts about one round, so it costs ~1% of such a batch


def window(spec: BackendSpec) -> int:
    """How many requests the backend works on at once: its requests in flight, or one wave in process."""
    if spec.kind != "openai":
        return spec.batch_size
    replicas = len(spec.base_url) if isinstance(spec.base_url, list) else 1  # None: a managed server
    return spec.max_concurrency * replicas


def llm_stage_batch_size(stage_batch_size: int, spec: BackendSpec) -> int:
    """`spec` as the stage calls it: a managed server's client spec (`client_spec`) is `openai`."""
    if spec.kind != "openai":
        # in process, generation goes in waves of the backend's batch size whatever the stage's batch,
        # and small batches let the stages of a pipeline overlap
        return stage_batch_size
    return max(stage_batch_size, WINDOW_ROUNDS * window(spec))
