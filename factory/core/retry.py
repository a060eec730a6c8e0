"""Bounded retry with backoff: the one policy (`RetryPolicy`) used by the Hub calls the client does not
retry itself (commit, settings; `with_retry`) and by the OpenAI-compatible backend's requests."""

from __future__ import annotations

import email.utils
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
    """How often to try a call and how long to wait between tries; the one backoff rule for the Hub
    and for LLM servers.

    Before retry `n` (1 = the first retry): the server's `Retry-After` when it sent one (seconds or an
    HTTP-date), capped at `retry_after_cap_s` (default `cap_s`); otherwise exponential backoff
    `min(cap_s, base_s * 2**(n-1))`, jittered down to half of it so that a burst of failed requests
    does not come back all at once.
    """

    attempts: int = 5
    base_s: float = 1.0
    cap_s: float = 30.0
    retry_after_cap_s: float | None = None

    def delay(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds to wait before retry number `retry`."""
        asked = retry_after_seconds(retry_after)
        if asked is not None:
            return min(asked, self.cap_s if self.retry_after_cap_s is None else self.retry_after_cap_s)
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return random.uniform(ceiling / 2, ceiling)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """An HTTP `Retry-After` value in seconds from `now`: delay-seconds or an HTTP-date (a date in the
    past is 0); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


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
            wait = policy.delay(attempt + 1, retry_after)
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
