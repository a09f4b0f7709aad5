"""Writing to standard streams whose reader may go away (``cacard info DIR | head -1``, a
daemon whose log reader was restarted).

Python ignores SIGPIPE, so a closed pipe raises BrokenPipeError where a C tool would end
silently. A command-line tool or a daemon should neither crash nor change its exit status
because nobody reads its output any more: the lines are lost, the work goes on.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO


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


class StderrLogger:
    """structlog's PrintLogger on stderr, except that a closed pipe only loses the lines."""

    def msg(self, message: str) -> None:
        # sys.stderr is looked up per line: tests and daemons may replace it.
        write_quietly(sys.stderr, message + "\n")

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg
