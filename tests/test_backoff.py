"""shared.backoff: Retry-After parsing and exponential delays, shared by the crawler and the bot clients."""

from __future__ import annotations

from shared.backoff import exponential, parse_retry_after


def test_retry_after_forms() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5  # Discord and Telegram send fractions
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0  # past: now
    for junk in (None, "", "soon", "nan", "-3x"):
        assert parse_retry_after(junk) is None, junk
    assert parse_retry_after("-3") == 0.0


def test_exponential() -> None:
    assert [exponential(a, 0.5) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert exponential(10, 0.5, cap=8.0) == 8.0
    assert exponential(1, 1.0, jitter=0.5) == 3.0
