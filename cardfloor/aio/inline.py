"""Handle a connection's bytes in the protocol callback that received them, instead of waking
a task parked in ``StreamReader.read`` (one loop turn per read: a call_soon, the task's step,
and under asyncio's loop an extra ``epoll_wait``).

:class:`InlineReading` is a ``StreamReaderProtocol``, so ``StreamWriter``, ``drain()``, EOF,
errors and TLS work as with ``asyncio.open_connection``. Its :meth:`~InlineReading.read` is
the reading task's ``StreamReader.read`` with a handler: while the task waits there, bytes that
arrive go straight to the handler, started with :func:`~cardfloor.aio.eager.start_eagerly`.
Only when a handler has to wait (backpressure, a card working in a thread) does it become a
task; bytes that arrive meanwhile are buffered in the ``StreamReader`` as before (bounded by its
limit, the transport paused beyond it) and handed to the reading task once the handler is done,
so the order of the bytes is kept and at most one handler runs at a time.

A handler started inline runs outside any task, so it must not use
:func:`asyncio.current_task` before its first wait (``asyncio.timeout`` does), as with
:func:`~cardfloor.aio.eager.start_eagerly`. An exception it raises reaches the reading task:
:meth:`~InlineReading.read` raises it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from .eager import start_eagerly

Handler = Callable[[bytes], Coroutine[Any, Any, None] | None]
"""Consumes one read's bytes: a coroutine (started inline, a task once it waits), or a plain
function that does the work at once and returns None, or a coroutine for what must wait."""


class InlineReading(asyncio.StreamReaderProtocol):
    """A stream protocol that hands bytes to :meth:`read`'s handler in ``data_received``."""

    def __init__(
        self,
        stream_reader: asyncio.StreamReader,
        client_connected_cb: Callable[
            [asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]
        ]
        | None = None,
    ) -> None:
        """``client_connected_cb`` as ``asyncio.StreamReaderProtocol``'s (a server's)."""
        super().__init__(stream_reader, client_connected_cb)
        # Weakly, as StreamReaderProtocol does: the reader refers to the transport, which
        # refers to us, and a cycle would keep a closed connection's objects until the
        # garbage collector's next full pass (the reading task holds the reader).
        self._reader = weakref.ref(stream_reader)
        # The reading task's, while it reads: dropped at the end for the same reason.
        self._handler: Handler | None = None
        # True while the reading task waits in read() with nothing buffered: only then may a
        # handler run inline, after every byte that came before.
        self._parked = False
        self._size = 0  # read()'s
        self._busy: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        handler = self._handler
        if handler is None or not self._parked or self._busy is not None:
            # The reading task takes these after what it has (or its handler's task) is done.
            self._parked = False
            super().data_received(data)
            return
        if len(data) > self._size:
            # A handler gets no more than the reading task would have read (its size): what
            # its connection buffers stays bounded as before. The rest waits in the
            # StreamReader, and the reading task takes it after the handler is done.
            self._parked = False
            super().data_received(data[self._size :])
            data = data[: self._size]
        try:
            work = handler(data)
            if work is None:
                return
            task = start_eagerly(work)
        except Exception as error:
            self._fail(error)
            return
        if task is not None:
            self._busy = task
            task.add_done_callback(self._handled)

    def _handled(self, task: asyncio.Task[None]) -> None:
        self._busy = None
        if task.cancelled():
            return
        error = task.exception()
        if isinstance(error, Exception) and self._parked:
            # Else the reading task waits for this task in read() and raises it there.
            self._fail(error)

    def interrupt(self, error: Exception) -> None:
        """Make the reading task's :meth:`read` raise ``error`` (now if it waits there, else at
        its next call): for a deadline that a handler started inline armed."""
        self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._handler = None

    def _fail(self, error: Exception) -> None:
        self._parked = False
        self._handler = None
        reader = self._reader()
        if reader is not None:
            reader.set_exception(error)

    async def read(self, size: int, handler: Handler) -> bytes:
        """The next bytes (at most ``size``) that ``handler`` did not take, b"" at EOF; while
        waiting, bytes that arrive go to ``handler`` (see the module), ``size`` at a time."""
        reader = self._reader()
        if reader is None:
            raise RuntimeError("InlineReading.read: its StreamReader is gone")
        self._handler = handler
        self._size = size
        self._parked = True
        try:
            data = await reader.read(size)
        except BaseException:
            self._handler = None
            if self._busy is not None:
                self._busy.cancel()  # the reading task is cancelled or failed: so is its work
            raise
        finally:
            self._parked = False
        busy = self._busy
        if busy is not None:
            # These bytes came after the handler's: they wait for it, and so does EOF.
            try:
                await asyncio.wait({busy})
            except asyncio.CancelledError:
                busy.cancel()
                raise
            if not busy.cancelled():
                busy.result()  # its exception, if any
        if not data:
            self._handler = None
        return data
