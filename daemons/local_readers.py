"""The readers and cards on the client's side, and their mirror on the VSCard host.

Backends (emulated cards, PC/SC readers) and the console change :class:`LocalReader` objects
through :class:`HostMirror`, which announces every change to the host over the current
connection, and announces everything again after a reconnect.

A host may hold one reader only: QEMU's ccid-card-passthru answers every ReaderAdd with reader
id 0 (hw/usb/ccid-card-passthru.c, ``ccid_card_vscard_handle_message``), so two local readers
would share one id and the guest's APDUs would reach whichever was announced last. The mirror
learns this from the replies (:class:`vscard.asyncio.client.ReaderIdInUseError`, the second
ReaderAdd getting the first one's id) and then shows the host one local reader,
:func:`reader_to_serve`, moving the host's reader to another local one as cards come and go.

A host that knows our CardReset extension (ccid-passthru; QEMU does not) tells each reader
when its importer powers the card off and on, and which protocol its reader runs: the card is
reset (:meth:`LocalCard.cold_reset`: an emulated card powers on again, a PC/SC card gets
``SCardReconnect`` with ``SCARD_RESET_CARD``) before the reader's next APDU, and an emulated
card runs that protocol (:class:`~daemons.local_card.ProtocolAware`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import structlog

import vscard
from vscard.asyncio.client import ReaderIdInUseError

from .card_guard import CardGuard
from .local_card import LocalCard, ProtocolAware

log = structlog.get_logger("daemons.vscclient")


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
    remote: vscard.ClientReader | None = field(default=None, repr=False)
    """Its twin on the host, while connected and accepted."""
    guard: CardGuard = field(default_factory=CardGuard, repr=False)
    """What the host may do to the card."""

    @property
    def holds_card(self) -> bool:
        """Whether a card is in the reader."""
        return self.inserted and self.card is not None

    def transmit(self, apdu: bytes) -> Coroutine[Any, Any, bytes]:
        """What the guard makes of ``apdu`` (the card's own ``transmit`` when it lets it through:
        no coroutine of ours on every APDU's path). Raises :class:`NoCardInReaderError` here."""
        card = self.card
        if card is None or not self.inserted:
            raise NoCardInReaderError(self.name)
        return self.guard.transmit(card, apdu)

    async def cold_reset(self, protocol: int | None = None) -> bool:
        """Power the card off and on: the host's reader did, and runs ``protocol`` with it, or
        (None) the console asked. False: no card to reset; the card that comes next is powered
        on as it goes in."""
        card = self.card
        if card is None or not self.inserted:
            return False
        await card.cold_reset()
        self.guard.forget(card)
        if protocol is None:
            log.info("vscclient.card_reset", index=self.index, by="console")
        else:
            set_protocol(card, protocol)
            log.info("vscclient.card_reset", index=self.index, protocol=protocol)
        return True

    async def set_protocol(self, protocol: int) -> None:
        """The host's reader runs ``protocol`` with the card now."""
        if self.card is not None:
            set_protocol(self.card, protocol)
            log.info("vscclient.card_protocol", index=self.index, protocol=protocol)


def set_protocol(card: LocalCard, protocol: int) -> None:
    """Tell an emulated card the protocol its reader runs; a real card knows it already."""
    if isinstance(card, ProtocolAware):
        card.protocol = protocol


def reader_to_serve(
    readers: Sequence[LocalReader], current: LocalReader | None
) -> LocalReader | None:
    """The local reader a host that holds one reader should see.

    The current one while it holds a card (the guest keeps its session); else the first, in
    the order the readers appeared (PC/SC's list order), that holds one; else, with no card
    anywhere, the current one still, or the first. None only without readers.
    """
    if current is not None and current.holds_card and current in readers:
        return current
    with_card = next((reader for reader in readers if reader.holds_card), None)
    if with_card is not None:
        return with_card
    if current is not None and current in readers:
        return current
    return readers[0] if readers else None


class HostMirror:
    """Keeps the host's readers and cards in step with the local ones."""

    def __init__(self, guard: CardGuard | None = None) -> None:
        self.guard = guard if guard is not None else CardGuard()
        self.readers: list[LocalReader] = []
        self._client: vscard.Client | None = None
        self._lock = asyncio.Lock()
        # On a host that holds one reader: that reader, and the local one it shows.
        self._slot: vscard.ClientReader | None = None
        self.served: LocalReader | None = None
        """On a host that holds one reader, the local reader it sees (else None)."""

    @property
    def connected(self) -> bool:
        return self._client is not None and not self._client.closed

    @property
    def one_reader_host(self) -> bool:
        """Whether the current host showed that it holds one reader (QEMU does)."""
        return self._slot is not None

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
            self._forget_host()
            # Every ReaderAdd before any ATR: a host that holds one reader shows it in the
            # second reply, before it is shown a card that may not be the one it will keep.
            for reader in self.readers:
                await self._add_remote(reader)
            if self._slot is None:
                for reader in self.readers:
                    if reader.remote is not None and reader.holds_card:
                        await self._announce_card(reader)

    def detach(self) -> None:
        """The connection is gone; local state stays for the next one."""
        self._client = None
        self._forget_host()

    async def add_reader(self, reader: LocalReader) -> None:
        async with self._change():
            self.readers.append(reader)
            log.info("vscclient.reader_added", index=reader.index, name=reader.name)
            if self._slot is not None:
                await self._serve_best()
                return
            await self._add_remote(reader)
            # (Unless this ReaderAdd showed a host with one reader: then it is served already.)
            if self._slot is None and reader.remote is not None and reader.holds_card:
                await self._announce_card(reader)

    async def remove_reader(self, reader: LocalReader) -> None:
        async with self._change():
            if reader in self.readers:
                self.readers.remove(reader)
            log.info("vscclient.reader_removed", index=reader.index, name=reader.name)
            remote, reader.remote = reader.remote, None
            if self._slot is not None:
                # The host keeps its one reader; it loses the card it showed from this one.
                if reader is self.served:
                    self.served = None
                    if self._slot.atr is not None:
                        await self._slot.remove_card()
                    await self._serve_best()
            elif remote is not None:
                with contextlib.suppress(vscard.VSCardError, OSError):
                    await remote.remove()

    async def insert(self, reader: LocalReader, card: LocalCard | None = None) -> bool:
        """Put ``card`` (or the reader's own card back) in; False if there is no card."""
        async with self._change():
            if card is not None:
                reader.card = card
            if reader.card is None:
                return False
            reader.inserted = True
            reader.card.power_on()
            log.info("vscclient.card_inserted", index=reader.index, atr=reader.card.atr.hex())
            if reader.remote is not None:
                await self._announce_card(reader)
            if self._slot is not None:
                await self._serve_best()
        return True

    async def remove(self, reader: LocalReader, *, forget_card: bool = False) -> None:
        """Take the card out; the host hears of it once any APDU in progress is answered."""
        async with self._change():
            was_inserted = reader.inserted
            reader.inserted = False
            if forget_card:
                reader.card = None
            if was_inserted:
                log.info("vscclient.card_removed", index=reader.index)
            if was_inserted and reader.remote is not None and reader.remote.atr is not None:
                with contextlib.suppress(vscard.VSCardError, OSError):
                    await reader.remote.remove_card()
            if self._slot is not None:
                await self._serve_best()

    async def reset(self, reader: LocalReader) -> bool:
        """Reset the card as if it were taken out and put back; False if there is no card.

        The card is cold-reset (a real one through its reader, ``SCARD_RESET_CARD``), then the
        host hears CardRemove and ATR: QEMU, which answers the guest's power cycles itself and
        never passes them on, shows its guest a card pulled out and put back in, and the guest
        starts over with a card that has nothing verified.
        """
        async with self._change():
            if not await reader.cold_reset():
                return False
            if reader.remote is not None and reader.remote.atr is not None:
                await reader.remote.remove_card()
                await self._announce_card(reader)
        return True

    @contextlib.asynccontextmanager
    async def _change(self) -> AsyncIterator[None]:
        """One change at a time, so the host sees them in the order they happened.

        A change the host missed because the connection just broke is not the backend's
        failure: the connection loop notices and announces everything to the next connection.
        """
        async with self._lock:
            try:
                yield
            except (vscard.ConnectionClosedError, TimeoutError, OSError) as error:
                log.warning("vscclient.host_not_told", error=str(error) or type(error).__name__)

    def _forget_host(self) -> None:
        self._slot = None
        self.served = None
        for reader in self.readers:
            reader.remote = None

    def _transmit(self, announced: LocalReader, apdu: bytes) -> Coroutine[Any, Any, bytes]:
        # On a host that holds one reader, its reader shows whichever local one is served.
        # (The vscard client calls this inside its try: what it raises here is the card's
        # failure as much as what the coroutine raises.)
        reader = announced if self._slot is None else self.served
        if reader is None:
            raise NoCardInReaderError("(no reader)")
        return reader.transmit(apdu)

    def _target(self, announced: LocalReader) -> LocalReader | None:
        # On a host that holds one reader, its reader shows whichever local one is served.
        return announced if self._slot is None else self.served

    async def _cold_reset(self, announced: LocalReader, protocol: int) -> None:
        reader = self._target(announced)
        if reader is not None:
            await reader.cold_reset(protocol)

    async def _set_protocol(self, announced: LocalReader, protocol: int) -> None:
        reader = self._target(announced)
        if reader is not None:
            await reader.set_protocol(protocol)

    async def _add_remote(self, reader: LocalReader) -> None:
        """ReaderAdd for ``reader``; on learning the host holds one reader, serve by the rule."""
        client = self._client
        if client is None or client.closed or self._slot is not None:
            return
        try:
            # eager: _transmit, LocalReader.transmit and the cards behind them never use
            # current_task().
            reader.remote = await client.add_reader(
                reader.name,
                transmit=partial(self._transmit, reader),
                eager=True,
                reset=partial(self._cold_reset, reader),
                protocol=partial(self._set_protocol, reader),
            )
        except ReaderIdInUseError as error:
            await self._hold_one_reader(client.readers[error.reader_id])
        except vscard.RequestRefusedError as error:
            log.warning("vscclient.reader_refused", index=reader.index, code=error.code)

    async def _hold_one_reader(self, slot: vscard.ClientReader) -> None:
        self._slot = slot
        self.served = next((reader for reader in self.readers if reader.remote is slot), None)
        for reader in self.readers:
            if reader is not self.served:
                reader.remote = None
        log.info("vscclient.one_reader_host", reader_id=slot.reader_id, readers=len(self.readers))
        await self._serve_best(announce=True)

    async def _serve_best(self, *, announce: bool = False) -> None:
        """Show the host's one reader the local reader :func:`reader_to_serve` picks; log
        which one when it changes (or with ``announce``)."""
        slot = self._slot
        assert slot is not None
        choice = reader_to_serve(self.readers, self.served)
        changed = choice is not self.served
        if changed:
            if slot.atr is not None:  # the card the host saw goes with its reader
                await slot.remove_card()
            if self.served is not None:
                self.served.remote = None
            self.served = choice
        if choice is None:
            return
        choice.remote = slot
        if changed or announce:
            log.info(
                "vscclient.host_sees", index=choice.index, name=choice.name, card=choice.holds_card
            )
        if choice.holds_card and slot.atr is None:
            await self._announce_card(choice)
        elif not choice.holds_card and slot.atr is not None:
            await slot.remove_card()

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
