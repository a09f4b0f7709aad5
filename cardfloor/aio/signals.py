"""Stop on SIGINT and SIGTERM (and Ctrl-Break on Windows) on any platform's event loop.

``loop.add_signal_handler`` exists on POSIX loops only: Windows' raise NotImplementedError.
There a ``signal.signal`` handler, which Python runs in the main thread between bytecodes,
hands the callback to the loop with ``call_soon_threadsafe``, which also wakes a loop blocked
waiting for I/O (select, or the Proactor's completion port).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Final

#: What asks a daemon to stop: Ctrl-C, ``kill``, a service manager; Ctrl-Break on Windows.
STOP_SIGNALS: Final = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[], object]) -> Iterator[None]:
    """Run ``callback`` on the running loop when a stop signal arrives, until the block ends.

    Outside the main thread no handler can be set: then this does nothing.
    """
    loop = asyncio.get_running_loop()
    with contextlib.ExitStack() as undo:
        for signum in STOP_SIGNALS:
            try:
                loop.add_signal_handler(signum, callback)
            except NotImplementedError:
                _add_plain_handler(loop, signum, callback, undo)
            except (RuntimeError, ValueError):  # not the main thread
                continue
            else:
                undo.callback(loop.remove_signal_handler, signum)
        yield


def _add_plain_handler(
    loop: asyncio.AbstractEventLoop,
    signum: int,
    callback: Callable[[], object],
    undo: contextlib.ExitStack,
) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        # A signal during the loop's shutdown must not raise into whatever code it interrupts.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback)

    try:
        previous = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        return
    # None: a handler set outside Python, which cannot be put back; the default is closest.
    undo.callback(signal.signal, signum, signal.SIG_DFL if previous is None else previous)
