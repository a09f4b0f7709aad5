"""Start a coroutine inline and make a task of it only if it has to wait.

Most work on our hot paths finishes without waiting: a USB/IP bulk OUT into the reader, an
emulated card's answer to a VSCard APDU. Running it as a task costs a task, a loop turn and a
done callback each time (before this, a quarter of the USB/IP server's CPU per APDU).
:func:`start_eagerly` runs the coroutine at once up to its first suspension, as Python 3.12's
eager tasks do; only one that suspends (an IN URB parked until the card answers, a private-key
operation in a thread) goes on as an :class:`asyncio.Task`, cancellable like any other.

Unlike 3.12's, the inline part runs in the caller's task: :func:`asyncio.current_task` there is
the caller's, so ``asyncio.timeout`` or ``asyncio.TaskGroup`` entered before the first wait
would later cancel the caller. Only coroutines known not to do that are started this way: ours,
and those of devices and handlers that say so (``UsbDevice.start_inline``,
``Client.add_reader(eager=True)``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from types import TracebackType
from typing import Any, TypeVar

_T = TypeVar("_T")


def start_eagerly(
    coro: Coroutine[Any, Any, None],
    *,
    name: str | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Task[None] | None:
    """Run ``coro`` now until it finishes (return None) or first waits (return its task, on
    ``loop``: the running loop when None).

    An exception raised before the first wait propagates to the caller.
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    if loop is None:
        loop = asyncio.get_running_loop()
    return loop.create_task(_Resumed(coro, yielded), name=name)


def start(
    coro: Coroutine[Any, Any, None],
    *,
    eager: bool,
    name: str | None = None,
    loop: asyncio.AbstractEventLoop | None = None,
) -> asyncio.Task[None] | None:
    """:func:`start_eagerly` when the caller vouches for ``coro`` (``eager``), else a task.

    A caller that keeps its ``loop`` saves a lookup (under Python 3.11 each
    ``asyncio.get_running_loop()`` is a ``getpid()`` system call)."""
    if eager:
        return start_eagerly(coro, name=name, loop=loop)
    if loop is None:
        loop = asyncio.get_running_loop()
    return loop.create_task(coro, name=name)


def resumed(coro: Coroutine[Any, Any, _T], yielded: Any) -> Coroutine[Any, Any, _T]:
    """``coro``, which its caller drove with ``send(None)`` until it yielded ``yielded``, as a
    coroutine to await or make a task of: its first step yields ``yielded`` again."""
    return _Resumed(coro, yielded)


class _Resumed(Coroutine[Any, Any, _T]):
    """A started coroutine, handed to a task: its first step replays what it last yielded.

    A task cancelled before its first step throws into the coroutine, which then cleans up
    (an ``Event.wait`` drops its waiter) as it would have had it been a task from the start.
    """

    __slots__ = ("_coro", "_yielded")

    def __init__(self, coro: Coroutine[Any, Any, _T], yielded: Any) -> None:
        self._coro = coro
        self._yielded: Any = yielded
        # The first send hands the task the future the coroutine is waiting on.

    def send(self, value: Any) -> Any:
        yielded = self._yielded
        if yielded is not None:
            self._yielded = None
            return yielded
        return self._coro.send(value)

    def throw(
        self,
        typ: type[BaseException] | BaseException,
        val: BaseException | object = None,
        tb: TracebackType | None = None,
    ) -> Any:
        self._yielded = None
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # type: ignore[arg-type]

    def close(self) -> None:
        self._yielded = None
        self._coro.close()

    def __await__(self) -> Generator[Any, None, _T]:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def __iter__(self) -> _Resumed[_T]:
        return self
