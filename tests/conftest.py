"""Suite-wide settings: structlog filtered to warnings so test output stays readable, and
restored after each test (the daemons' tests configure it for themselves)."""

import logging
from collections.abc import Iterator

import pytest
import structlog

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
