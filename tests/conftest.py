"""Suite-wide settings: the daemons' structlog events filtered to warnings so test output
stays readable, and structlog and the standard library's root logger restored after each test
(the daemons' tests and the cacard CLI configure them for themselves). The libraries print
nothing unless configured: tests read their events with :func:`tests.logs.capture_logs`."""

import logging
from collections.abc import Iterator

import pytest
import structlog

from cardfloor.stdio import StderrHandler

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    saved = structlog.get_config()
    root = logging.getLogger()
    level = root.level
    yield
    structlog.configure(**saved)
    for handler in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)
