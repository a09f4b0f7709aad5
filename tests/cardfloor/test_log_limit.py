"""Repeated warnings are rate-limited, and the count of dropped lines is reported."""

from __future__ import annotations

import pytest

from cardfloor.aio.log_limit import LogRateLimit
from cardfloor.aio.stream import BACKLOG_HEADROOM, listen_backlog, system_somaxconn


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_logged_then_the_rest_is_counted_and_reported() -> None:
    clock = Clock()
    limit = LogRateLimit(burst=3, interval=1.0, clock=clock)
    answers = [limit.allow("x") for _ in range(10)]
    assert answers == [0, 0, 0] + [None] * 7
    clock.now = 1.0
    assert limit.allow("x") == 7  # the first line of the next window says what was dropped
    assert limit.allow("x") == 0


def test_event_names_have_their_own_windows() -> None:
    limit = LogRateLimit(burst=1, clock=Clock())
    assert limit.allow("a") == 0
    assert limit.allow("a") is None
    assert limit.allow("b") == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="burst"):
        LogRateLimit(burst=0)
    with pytest.raises(ValueError, match="interval"):
        LogRateLimit(interval=0)


def test_the_backlog_holds_every_allowed_connection_within_the_kernel_cap() -> None:
    backlog, wanted = listen_backlog(1000)
    assert wanted == 1000 + BACKLOG_HEADROOM
    assert backlog == min(wanted, system_somaxconn())
