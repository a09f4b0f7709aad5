"""Writing to standard streams whose reader may go away (``cacard info DIR | head -1``, a
daemon whose log reader was restarted), and the commands' log output there.

Python ignores SIGPIPE, so a closed pipe raises BrokenPipeError where a C tool would end
silently. A command-line tool or a daemon should neither crash nor change its exit status
because nobody reads its output any more: the lines are lost, the work goes on.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Literal, TextIO

from cardfloor.log import add_fields

LogFormat = Literal["console", "json"]


def write_quietly(stream: TextIO, text: str) -> None:
    """Write and flush ``text``; if the reader has gone, point ``stream`` at /dev/null so later
    lines (and the flush at exit) go nowhere instead of raising again."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class StderrHandler(logging.Handler):
    """A logging handler that writes each formatted record to stderr; a closed pipe only loses
    the lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        # sys.stderr is looked up per line: tests and daemons may replace it.
        write_quietly(sys.stderr, line + "\n")


def configure_logging(level: int, log_format: LogFormat = "console") -> None:
    """Send log events at ``level`` and above to stderr, rendered by structlog (console or one
    JSON object a line: ``event``, ``level``, ``timestamp`` and the fields).

    Both kinds of events go there: the libraries' (:mod:`cardfloor.log`, standard library
    records) and the commands' own structlog events. Calling it again replaces the set-up.
    """
    import structlog  # only the commands need it; the libraries never import it

    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.typing.Processor] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    handler = StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[add_fields, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
