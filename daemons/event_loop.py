"""The daemons' event loop: uvloop when it is installed, else asyncio's own.

uvloop moves the loop, the sockets and the transports into C (libuv); our protocol code is
unchanged, and ``benchmarks/`` measures the gain (docs/benchmarks.md: 1.5-1.8x on round trips).
``VSCARD_EVENT_LOOP`` chooses: ``auto`` (the default: uvloop when installed, the ``fast`` extra),
``uvloop`` (an error when it is not installed) or ``asyncio`` (the standard loop).
uvloop does not exist for Windows: there ``auto`` takes asyncio's default, the Proactor loop,
which has everything the daemons use (TCP, TLS, threads) and lacks what they avoid
(``add_reader``, ``add_signal_handler``: see :mod:`daemons.console`, :mod:`cardfloor.aio.signals`).

uvloop was opt-in while TLS stalled on it: ccid-passthru upgraded each accepted connection with
``StreamWriter.start_tls``, and uvloop starts reading a connection as soon as it is accepted, so
the client's ClientHello could already sit in the plain StreamReader, lost to the handshake
(uvloop#707). :func:`vscard.serve` now hands the unread socket to
``loop.connect_accepted_socket``, TLS from the first byte, on either loop.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

#: The environment variable that picks the loop: ``auto`` (default), ``uvloop`` or ``asyncio``.
ENVIRONMENT_VARIABLE = "VSCARD_EVENT_LOOP"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """What :func:`run` builds its loop with, as ``VSCARD_EVENT_LOOP`` and the install decide."""
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
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
