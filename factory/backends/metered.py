"""A stage's backend that reports its progress (answers, tokens, requests in flight) to the run's
progress file while it generates (`factory.core.progress` reads it for the live lines)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from factory.backends.base import Backend, ChatRequest, Completion, StreamingBackend, in_order
from factory.core.progress import PROGRESS_FILE_ENV, TICK_S, append_event


def _stamp(completions: Sequence[Completion], sent: float) -> None:
    """Mark fresh answers with when their call began and when they arrived (now)."""
    received = time.time()
    for c in completions:
        if not c.cached:
            c.sent_at, c.received_at = sent, received


class MeteredBackend:
    """A stage's backend that reports, every TICK_S while it generates, the answers and tokens since the
    last report and the requests in flight (when the backend tells: `in_flight`)."""

    def __init__(self, stage: str, backend: Backend) -> None:
        self.stage, self.inner = stage, backend
        self.model_id, self.revision = backend.model_id, backend.revision
        self._lock = threading.Lock()
        self._answered = self._tokens = 0

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        sent = time.time()
        if not os.environ.get(PROGRESS_FILE_ENV) or not isinstance(self.inner, StreamingBackend):
            done = self.inner.generate(requests)
            _stamp(done, sent)
            self._count(done)
            self._flush(final=True)
            return done
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(stop,), daemon=True)
        ticker.start()
        try:
            return in_order(len(requests), self._counted(self.inner.stream(requests), sent))
        finally:
            stop.set()
            ticker.join()
            self._flush(final=True)

    def _counted(self, pairs: Any, sent: float) -> Any:
        for i, completion in pairs:
            _stamp([completion], sent)
            self._count([completion])
            yield i, completion

    def _count(self, completions: Sequence[Completion]) -> None:
        with self._lock:
            self._answered += len(completions)
            self._tokens += sum(c.completion_tokens for c in completions if not c.cached)

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(TICK_S):
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        with self._lock:
            answered, tokens, self._answered, self._tokens = self._answered, self._tokens, 0, 0
        event: dict[str, Any] = {"stage": self.stage, "requests": answered, "tokens": tokens}
        in_flight = 0 if final else getattr(self.inner, "in_flight", None)
        if in_flight is not None:
            event["in_flight"] = in_flight
        append_event(event)

    def close(self) -> None:
        self.inner.close()
