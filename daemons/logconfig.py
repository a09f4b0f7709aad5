"""structlog set-up shared by the daemons: key-value events on stderr, console or JSON."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

from cacard.stdio import StderrLogger

LogFormat = Literal["console", "json"]


def configure_logging(level: int = logging.INFO, log_format: LogFormat = "console") -> None:
    """Send structlog events at ``level`` and above to stderr (stdout is the daemon's console)."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # A log reader that goes away (journald restarting, `| head`) loses lines; it must not
        # make the daemon drop clients or exit.
        logger_factory=lambda *_: StderrLogger(),
        cache_logger_on_first_use=False,
    )


def level_from_debug(debug: int) -> int:
    """libcacard's ``-d N``: 0 logs state changes, 1 and above every APDU."""
    return logging.DEBUG if debug > 0 else logging.INFO
