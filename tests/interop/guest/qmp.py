"""A minimal asyncio QMP client on a socket QEMU inherited (``-chardev socket,fd=N``).

The console owns QEMU's stdio, so QMP gets one end of a socketpair: no path to poll for, and
QEMU greets as soon as the monitor exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Mapping
from typing import Any

#: QMP events kept for :meth:`Qmp.event` (the newest ones).
MAX_EVENTS = 256


class QmpError(RuntimeError):
    """QEMU refused a command, or the QMP channel closed."""


class Qmp:
    """One QMP session. Replies and events are read by a background task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._events: list[dict[str, Any]] = []
        self._event_arrived = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def over(cls, sock: socket.socket) -> Qmp:
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def start(self) -> dict[str, Any]:
        """Read the greeting, enter command mode; returns the greeting."""
        line = await self._reader.readline()
        if not line:
            raise QmpError("QEMU closed QMP before greeting")
        greeting: dict[str, Any] = json.loads(line)
        self._task = asyncio.create_task(self._read(), name="qmp-reader")
        await self.execute("qmp_capabilities")
        return greeting

    async def _read(self) -> None:
        try:
            while line := await self._reader.readline():
                message: dict[str, Any] = json.loads(line)
                if "event" in message:
                    self._events.append(message)
                    del self._events[:-MAX_EVENTS]
                    self._event_arrived.set()
                else:
                    await self._replies.put(message)
        finally:
            self._closed = True
            self._event_arrived.set()
            await self._replies.put({"error": {"desc": "QMP channel closed"}})

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run ``command``; returns its ``return`` value or raises :class:`QmpError`."""
        request: dict[str, object] = {"execute": command}
        if arguments:
            request["arguments"] = dict(arguments)
        async with self._lock:
            if self._closed:
                raise QmpError(f"{command}: QMP channel closed")
            self._writer.write(json.dumps(request).encode() + b"\n")
            await self._writer.drain()
            reply = await self._replies.get()
        if "error" in reply:
            raise QmpError(f"{command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    async def event(self, name: str, **data: object) -> dict[str, Any]:
        """Wait for (or find, if already received) an event whose data contains ``data``."""
        while True:
            for index, message in enumerate(self._events):
                fields = message.get("data", {})
                if message["event"] == name and all(fields.get(k) == v for k, v in data.items()):
                    del self._events[index]
                    return message
            if self._closed:
                raise QmpError(f"QMP closed before event {name}")
            self._event_arrived.clear()
            await self._event_arrived.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._task
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()
