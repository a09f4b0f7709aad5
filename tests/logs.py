"""Capturing the libraries' log events in tests (they log through :mod:`cardfloor.log`)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Capture(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.entries: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if isinstance(event, str):
            fields = getattr(record, "fields", {})
            entry = {"event": event, "log_level": record.levelname.lower(), **fields}
            if record.exc_info:
                entry["exc_info"] = record.exc_info
            self.entries.append(entry)


@contextmanager
def capture_logs(level: int = logging.WARNING) -> Iterator[list[dict[str, Any]]]:
    """The library events at ``level`` and above logged inside the block, as dicts: ``event``,
    ``log_level`` and the fields (the shape of structlog's ``capture_logs``)."""
    handler = _Capture(level)
    root = logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(min(level, saved) if saved else level)
    try:
        yield handler.entries
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


class ErrorWatch(logging.Handler):
    """Records the library events at error level and up: (event, exception being handled)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[tuple[str, BaseException | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.errors.append((str(getattr(record, "event", record.msg)), sys.exc_info()[1]))
