"""The key-value logger the library logs through."""

from __future__ import annotations

import logging

import pytest

from cardfloor.log import get_logger


def test_is_enabled_for_follows_the_level_set_later(caplog: pytest.LogCaptureFixture) -> None:
    log = get_logger("cardfloor.test_log").bind(card=1)
    caplog.set_level(logging.INFO, logger="cardfloor.test_log")
    assert not log.is_enabled_for(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="cardfloor.test_log")
    assert log.is_enabled_for(logging.DEBUG)
    log.debug("test.event", value=3)
    assert "test.event" in caplog.text
    assert "value=3" in caplog.text
