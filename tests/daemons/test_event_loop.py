"""The daemons' loop: uvloop when installed, unless VSCARD_EVENT_LOOP asks for asyncio's."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

from daemons import event_loop


async def running_loop_name() -> str:
    return event_loop.loop_name(asyncio.get_running_loop())


def test_asyncio_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSCARD_EVENT_LOOP", "asyncio")
    assert event_loop.run(running_loop_name()) == "asyncio"


@pytest.mark.parametrize("choice", [None, "auto"])
def test_the_default_and_auto_take_uvloop_when_it_is_installed(
    monkeypatch: pytest.MonkeyPatch, choice: str | None
) -> None:
    if choice is None:
        monkeypatch.delenv("VSCARD_EVENT_LOOP", raising=False)
    else:
        monkeypatch.setenv("VSCARD_EVENT_LOOP", choice)
    installed = importlib.util.find_spec("uvloop") is not None
    assert event_loop.run(running_loop_name()) == ("uvloop" if installed else "asyncio")


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSCARD_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="VSCARD_EVENT_LOOP='trio'"):
        event_loop.loop_factory()


def test_without_uvloop_auto_takes_asyncios_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on Windows, where uvloop does not exist."""
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.setenv("VSCARD_EVENT_LOOP", "auto")
    assert event_loop.run(running_loop_name()) == "asyncio"
