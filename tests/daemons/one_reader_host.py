"""A VSCard host that answers as QEMU's ccid-card-passthru does, on a real socket.

QEMU holds one reader: it answers every ReaderAdd with reader id 0, whatever the client added
before, and ignores the reader id of everything else (hw/usb/ccid-card-passthru.c,
``ccid_card_vscard_handle_message``). This host does the same and records what its one reader
shows, so a test can tell which of the client's readers the guest would see.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import vscard
from vscard import (
    APDU,
    ATR,
    CardRemove,
    Decoder,
    Error,
    ErrorCode,
    Init,
    ReaderAdd,
    ReaderRemove,
    encode,
)


@dataclass
class OneReaderHost:
    """Records every message; ``atr`` is the card its one reader shows (None: no card)."""

    received: list[vscard.Message] = field(default_factory=list)
    atr: bytes | None = None
    connections: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _writer: asyncio.StreamWriter | None = None
    _answers: asyncio.Queue[APDU | Error] = field(default_factory=asyncio.Queue)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.connections += 1
        decoder = Decoder()
        while data := await reader.read(65536):
            for message in decoder.feed(data):
                self._answer(message, writer)
                async with self._changed:
                    self.received.append(message)
                    self._changed.notify_all()
        writer.close()

    def _answer(self, message: vscard.Message, writer: asyncio.StreamWriter) -> None:
        match message:
            case Init():
                writer.write(encode(Init(vscard.VSCARD_UNDEFINED_READER_ID, 2, (0,))))
            case ReaderAdd():
                writer.write(encode(Error(0, ErrorCode.SUCCESS)))
            case ATR(reader_id, atr):
                self.atr = atr
                writer.write(encode(Error(reader_id, ErrorCode.SUCCESS)))
            case CardRemove(reader_id) | ReaderRemove(reader_id):
                self.atr = None
                writer.write(encode(Error(reader_id, ErrorCode.SUCCESS)))
            case APDU() | Error():
                self._answers.put_nowait(message)

    async def wait_until(self, condition: Callable[[OneReaderHost], bool]) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: condition(self)), 20)

    async def wait_for_card(self, atr: bytes | None) -> None:
        """Until the one reader shows the card with ``atr`` (None: no card)."""
        await self.wait_until(lambda host: host.atr == atr)

    def count(self, kind: type) -> int:
        return sum(isinstance(message, kind) for message in self.received)

    async def transmit(self, apdu: bytes) -> APDU | Error:
        """Send the guest's APDU to reader 0, as QEMU does, and return the client's answer."""
        assert self._writer is not None
        self._writer.write(encode(APDU(0, apdu)))
        return await asyncio.wait_for(self._answers.get(), 20)

    def drop(self) -> None:
        """Close the connection, as a restarted QEMU chardev would."""
        assert self._writer is not None
        self._writer.close()


@contextlib.asynccontextmanager
async def one_reader_host() -> AsyncIterator[tuple[OneReaderHost, int]]:
    """A :class:`OneReaderHost` listening on 127.0.0.1, and its port."""
    host = OneReaderHost()
    server = await asyncio.start_server(host.handle, "127.0.0.1", 0)
    async with server:
        yield host, server.sockets[0].getsockname()[1]
