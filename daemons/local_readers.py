"""The readers and cards on the client's side, and their mirror on the VSCard host.

Backends (emulated cards, PC/SC readers) and the console change :class:`LocalReader` objects
through :class:`HostMirror`, which announces every change to the host over the current
connection, and announces everything again after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Protocol

import structlog

import vscard

from .card_guard import CardGuard

log = structlog.get_logger("daemons.vscclient")


class LocalCard(Protocol):
    """A card the client owns: an ATR and a way to send it APDUs."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> None:
        """The card goes into a reader: cold reset (an emulated card forgets its login)."""
        ...

    async def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU; return the response with SW1 SW2 (unchanged)."""
        ...


class NoCardInReaderError(Exception):
    """The host sent an APDU to a reader whose card has just gone."""


@dataclass(eq=False)
class LocalReader:
    """A reader on the client's side. ``index`` is its number on the console (0, 1, ...)."""

    index: int
    name: str
    card: LocalCard | None = None
    inserted: bool = False
    """Whether the card is in the reader (an emulated card can be taken out and put back)."""
    remote: vscard.Reader | None = field(default=None, repr=False)
    """Its twin on the host, while connected and accepted."""
    guard: CardGuard = field(default_factory=CardGuard, repr=False)
    """What the host may do to the card."""

    async def transmit(self, apdu: bytes) -> bytes:
        card = self.card
        if card is None or not self.inserted:
            raise NoCardInReaderError(self.name)
        return await self.guard.transmit(card, apdu)


class HostMirror:
    """Keeps the host's readers and cards in step with the local ones."""

    def __init__(self, guard: CardGuard | None = None) -> None:
        self.guard = guard if guard is not None else CardGuard()
        self.readers: list[LocalReader] = []
        self._client: vscard.Client | None = None
        # One change at a time, so the host sees them in the order they happened.
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.closed

    def new_reader(self, name: str, card: LocalCard | None = None) -> LocalReader:
        """A local reader with the next free console index (not yet announced)."""
        used = {reader.index for reader in self.readers}
        index = next(i for i in range(len(used) + 1) if i not in used)
        return LocalReader(index, name, card, inserted=card is not None, guard=self.guard)

    def find(self, index: int) -> LocalReader | None:
        return next((reader for reader in self.readers if reader.index == index), None)

    async def attach(self, client: vscard.Client) -> None:
        """Use a new connection: announce every reader, and every card inserted."""
        async with self._lock:
            self._client = client
            for reader in self.readers:
                reader.remote = None
                await self._announce_reader(reader)

    def detach(self) -> None:
        """The connection is gone; local state stays for the next one."""
        self._client = None
        for reader in self.readers:
            reader.remote = None

    async def add_reader(self, reader: LocalReader) -> None:
        async with self._lock:
            self.readers.append(reader)
            log.info("vscclient.reader_added", index=reader.index, name=reader.name)
            await self._announce_reader(reader)

    async def remove_reader(self, reader: LocalReader) -> None:
        async with self._lock:
            if reader in self.readers:
                self.readers.remove(reader)
            log.info("vscclient.reader_removed", index=reader.index, name=reader.name)
            if reader.remote is not None:
                with contextlib.suppress(vscard.VSCardError, OSError):
                    await reader.remote.remove()
                reader.remote = None

    async def insert(self, reader: LocalReader, card: LocalCard | None = None) -> bool:
        """Put ``card`` (or the reader's own card back) in; False if there is no card."""
        async with self._lock:
            if card is not None:
                reader.card = card
            if reader.card is None:
                return False
            reader.inserted = True
            reader.card.power_on()
            log.info("vscclient.card_inserted", index=reader.index, atr=reader.card.atr.hex())
            if reader.remote is not None:
                await self._announce_card(reader)
            return True

    async def remove(self, reader: LocalReader, *, forget_card: bool = False) -> None:
        """Take the card out; the host hears of it once any APDU in progress is answered."""
        async with self._lock:
            was_inserted = reader.inserted
            reader.inserted = False
            if forget_card:
                reader.card = None
            if was_inserted:
                log.info("vscclient.card_removed", index=reader.index)
            if was_inserted and reader.remote is not None and reader.remote.atr is not None:
                with contextlib.suppress(vscard.VSCardError, OSError):
                    await reader.remote.remove_card()

    async def _announce_reader(self, reader: LocalReader) -> None:
        client = self._client
        if client is None or client.closed:
            return
        try:
            # eager: LocalReader.transmit and the cards behind it never use current_task().
            reader.remote = await client.add_reader(
                reader.name, transmit=reader.transmit, eager=True
            )
        except vscard.RequestRefusedError as error:
            log.warning("vscclient.reader_refused", index=reader.index, code=error.code)
            return
        if reader.inserted and reader.card is not None:
            await self._announce_card(reader)

    async def _announce_card(self, reader: LocalReader) -> None:
        assert reader.remote is not None
        assert reader.card is not None
        try:
            await reader.remote.insert(reader.card.atr)
        except vscard.RequestRefusedError as error:
            log.warning(
                "vscclient.atr_refused",
                index=reader.index,
                atr=reader.card.atr.hex(),
                code=error.code,
            )
