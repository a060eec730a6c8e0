"""Bounded retry with backoff for Hub calls that the client does not retry itself (commit, settings)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# 409/412: a concurrent change (stale parent commit); 429: rate limit; 5xx: the Hub is struggling.
RETRYABLE_STATUS = frozenset({409, 412, 429})


def retryable(status: int | None) -> bool:
    """409/412/429 and every 5xx."""
    return status is not None and (status in RETRYABLE_STATUS or 500 <= status < 600)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try `attempt + 1`: the server's Retry-After if given, else jittered backoff."""
        if retry_after is not None:
            try:
                return min(float(retry_after), self.cap_s)
            except ValueError:
                pass
        return min(self.cap_s, self.base_s * 2**attempt) * (0.5 + random.random() / 2)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a huggingface_hub error, or None for anything else."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def with_retry(call: Callable[[], T], *, what: str, policy: RetryPolicy) -> T:
    """Run `call`; on a retryable HTTP status, wait and run it again, at most `policy.attempts` times in all.

    `call` must be safe to repeat: the publisher re-plans the commit from the current head each time.
    """
    for attempt in range(policy.attempts):
        try:
            return call()
        except Exception as exc:
            status = status_of(exc)
            if not retryable(status) or attempt == policy.attempts - 1:
                raise
            response = getattr(exc, "response", None)
            retry_after = response.headers.get("Retry-After") if response is not None else None
            wait = policy.delay(attempt, retry_after)
            logger.info(
                "%s: Hub answered %s; retry %d/%d in %.1fs",
                what,
                status,
                attempt + 1,
                policy.attempts - 1,
                wait,
            )
            time.sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises
