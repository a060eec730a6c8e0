"""The one backoff rule (factory.core.retry.RetryPolicy), used by the Hub calls and the OpenAI backend.
tests/unit/factory/dataset/test_publish.py and tests/unit/factory/backends/test_backends_openai.py
check it against real local servers."""

from __future__ import annotations

import email.utils

from factory.core.retry import RetryPolicy, retry_after_seconds


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_seconds("2.5") == 2.5
    now = 1_700_000_000.0
    assert retry_after_seconds(email.utils.formatdate(now + 7, usegmt=True), now=now) == 7.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past: no wait
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_the_server_s_wait_wins_up_to_its_cap() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=30.0)
    assert policy.delay(1, "12") == 12.0
    assert policy.delay(1, "600") == 30.0
    assert RetryPolicy(cap_s=30.0, retry_after_cap_s=120.0).delay(1, "600") == 120.0


def test_without_one_the_backoff_doubles_jittered_down_to_half_and_is_capped() -> None:
    policy = RetryPolicy(base_s=1.0, cap_s=5.0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        waits = [policy.delay(retry, "soon") for _ in range(50)]  # unreadable: our own backoff
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered
