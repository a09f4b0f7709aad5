"""The daemons' event loop: asyncio's own, or uvloop when asked for.

uvloop moves the loop, the sockets and the transports into C (libuv); our protocol code is
unchanged, and ``benchmarks/`` measures the gain (docs/benchmarks.md: 1.5-1.8x on round trips).
It is opt-in, ``VSCARD_EVENT_LOOP=uvloop``, not the default when installed: with uvloop 0.23 a
server-side TLS upgrade (``StreamWriter.start_tls``, how ccid-passthru logs refused
certificates) stalled in 3 of 5 runs of tests/daemons/test_daemons_tls.py, never on asyncio's
loop. ``VSCARD_EVENT_LOOP=auto`` takes uvloop when it is installed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

#: The environment variable that picks the loop: ``asyncio`` (default), ``uvloop`` or ``auto``.
ENVIRONMENT_VARIABLE = "VSCARD_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What :func:`run` builds its loop with, as ``VSCARD_EVENT_LOOP`` and the install decide."""
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "asyncio")
    if choice not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"{ENVIRONMENT_VARIABLE}={choice!r}: want auto, asyncio or uvloop")
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")  # optional: not a dependency
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
            return factory
    return asyncio.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: for a log line that says which loop runs."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run(main)`` on the loop :func:`loop_factory` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
