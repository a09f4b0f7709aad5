"""The runner against a real QEMU: a hung guest is killed and reported, a WAIT without an action
fails only its check. Cheap guests (setup (a) without a client: a reader, no card)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .checks import Check
from .runner import Guest, PassthruSetup

if TYPE_CHECKING:
    from .fixtures import RunGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop


async def test_a_hung_guest_is_killed_at_the_timeout_and_reported(run_guest: RunGuest) -> None:
    result = await run_guest(
        PassthruSetup(),
        [Check("quick", "echo quick"), Check("hangs", "sleep 600", seconds=900)],
        timeout=8,
    )
    assert result.timed_out
    assert not result.passed
    assert result.verdict("quick") == "PASS"
    assert result.verdict("hangs") == "MISSING"
    assert result.seconds < 15
    assert "TIMED OUT" in result.summary()


async def test_a_wait_nobody_answers_fails_that_check_only(run_guest: RunGuest) -> None:
    acted: list[str] = []

    async def act(guest: Guest) -> None:
        acted.append("done")

    result = await run_guest(
        PassthruSetup(),
        [
            Check("unanswered", "vs_wait no-such-action"),
            Check("answered", "vs_wait some-action"),
            Check("after", "true"),
        ],
        actions={"some-action": act},
        timeout=60,
    )
    assert result.completed
    assert result.verdict("unanswered") == "FAIL"
    assert "host could not: no-such-action" in result["unanswered"].output
    assert result.verdict("answered") == "PASS"
    assert result.verdict("after") == "PASS"
    assert acted == ["done"]
    assert any("no-such-action" in error for error in result.host_errors)
    assert not result.passed
