"""Real PC/SC readers (through pyscard) as local readers: hotplug, card insert/remove, transmit.

pcsc-lite's calls block, so each runs in a thread: one monitor thread waits in
``SCardGetStatusChange`` (woken by ``SCardCancel`` to stop), and each connected card has its
own context and a one-thread executor, so APDUs to one card are serialised and never share a
context with the monitor (pcsc-lite contexts are not for concurrent use).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

import structlog

from .local_readers import HostMirror, LocalReader

try:
    from smartcard import scard
except ImportError:  # the "pcsc" extra is optional
    scard = None

log = structlog.get_logger("daemons.pcsc")

_PNP_NOTIFICATION = "\\\\?PnP?\\Notification"


class PcscError(Exception):
    """A PC/SC call failed; the message names the call and pcsc-lite's error text."""


def require_pyscard() -> None:
    """Raise :class:`PcscError` saying how to get pyscard when it is missing."""
    if scard is None:
        raise PcscError(
            "pyscard is not installed: pip install 'vscard[pcsc]' "
            "(Debian: apt install libpcsclite-dev swig first)"
        )


def require_pcsc_service() -> None:
    """Raise :class:`PcscError` saying what to install or start when PC/SC cannot be used."""
    require_pyscard()
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if result == scard.SCARD_E_NO_SERVICE:
        raise PcscError("no PC/SC service is running: start pcscd (Debian: apt install pcscd)")
    _check("SCardEstablishContext", result)
    scard.SCardReleaseContext(context)


def _check(call: str, result: int) -> None:
    if result != scard.SCARD_S_SUCCESS:
        raise PcscError(
            f"{call}: {scard.SCardGetErrorMessage(result)} (0x{result & 0xFFFFFFFF:08X})"
        )


def _pci(protocol: int) -> object:
    return scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1


class PcscCard:
    """A card in a PC/SC reader, connected shared with T=0 or T=1; APDUs pass unchanged."""

    def __init__(self, reader: str) -> None:
        self.reader = reader
        self._executor = concurrent.futures.ThreadPoolExecutor(1, f"pcsc-{reader}")
        result, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check("SCardEstablishContext", result)
        try:
            result, self._card, protocol = scard.SCardConnect(
                self._context,
                reader,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            _check(f"SCardConnect({reader})", result)
            self._pci = _pci(protocol)
            result, _, _, _, atr = scard.SCardStatus(self._card)
            _check("SCardStatus", result)
        except BaseException:
            scard.SCardReleaseContext(self._context)
            self._executor.shutdown(wait=False)
            raise
        self._atr = bytes(atr)

    @property
    def atr(self) -> bytes:
        return self._atr

    def power_on(self) -> None:
        """Nothing to do: a real card was powered by its reader when it went in."""

    async def transmit(self, apdu: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._transmit, apdu)

    def _transmit(self, apdu: bytes) -> bytes:
        result, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        _check(f"SCardTransmit({self.reader})", result)
        return bytes(response)

    async def cold_reset(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._cold_reset)

    def _cold_reset(self) -> None:
        # SCARD_UNPOWER_CARD would be the cold reset; pcsc-lite turns both into a reset of
        # the card, and a reset is what every application that shares the card also sees.
        result, protocol = scard.SCardReconnect(
            self._card,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            scard.SCARD_RESET_CARD,
        )
        _check(f"SCardReconnect({self.reader})", result)
        self._pci = _pci(protocol)

    def close(self) -> None:
        def release() -> None:
            scard.SCardDisconnect(self._card, scard.SCARD_LEAVE_CARD)
            scard.SCardReleaseContext(self._context)

        self._executor.submit(release)
        self._executor.shutdown(wait=False)


def first_pcsc_card() -> PcscCard:
    """The card in the first PC/SC reader that has one (libcacard's ``-p``)."""
    require_pyscard()
    result, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    _check("SCardEstablishContext", result)
    try:
        result, names = scard.SCardListReaders(context, [])
        if result == scard.SCARD_E_NO_READERS_AVAILABLE:
            names = []
        else:
            _check("SCardListReaders", result)
        current: list[tuple[str, int, list[int]]] = []
        if names:
            unaware = [(name, scard.SCARD_STATE_UNAWARE) for name in names]
            result, current = scard.SCardGetStatusChange(context, 0, unaware)
            _check("SCardGetStatusChange", result)
        for name, state, _atr in current:
            if state & scard.SCARD_STATE_PRESENT and not state & scard.SCARD_STATE_MUTE:
                return PcscCard(name)
    finally:
        scard.SCardReleaseContext(context)
    raise PcscError("-p needs a PC/SC reader with a card in it; none has one")


@dataclass(frozen=True)
class _Change:
    reader: str
    present: bool | None
    """True: a card is in; False: the reader is empty; None: the reader went away."""
    atr: bytes = b""


class PcscWatcher:
    """Mirrors PC/SC readers (all, or those matching ``name``) and their cards onto a host."""

    def __init__(self, mirror: HostMirror, name: str | None = None) -> None:
        require_pyscard()
        self._mirror = mirror
        self._filter = name
        self._readers: dict[str, LocalReader] = {}
        self._cards: dict[str, PcscCard] = {}
        self._changes: asyncio.Queue[_Change | PcscError] = asyncio.Queue(256)
        self._stop = threading.Event()
        self._context: int | None = None

    def _wanted(self, reader: str) -> bool:
        return self._filter is None or self._filter == reader or self._filter in reader

    async def run(self) -> None:
        """Watch until cancelled; raise :class:`PcscError` if pcscd cannot be used at all."""
        result, self._context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _check("SCardEstablishContext", result)
        loop = asyncio.get_running_loop()
        monitor = threading.Thread(
            target=self._monitor, args=(loop,), name="pcsc-monitor", daemon=True
        )
        monitor.start()
        try:
            while True:
                change = await self._changes.get()
                if isinstance(change, PcscError):
                    raise change
                await self._apply(change)
        finally:
            self._stop.set()
            scard.SCardCancel(self._context)
            for card in self._cards.values():
                card.close()

    async def _apply(self, change: _Change) -> None:
        reader = self._readers.get(change.reader)
        if change.present is None:
            if reader is not None:
                await self._drop_card(change.reader, reader)
                await self._mirror.remove_reader(self._readers.pop(change.reader))
            return
        if reader is None:
            reader = self._mirror.new_reader(change.reader)
            self._readers[change.reader] = reader
            await self._mirror.add_reader(reader)
        if change.present and change.reader not in self._cards:
            loop = asyncio.get_running_loop()
            try:
                card = await loop.run_in_executor(None, PcscCard, change.reader)
            except PcscError as error:
                log.warning("pcsc.connect_failed", reader=change.reader, error=str(error))
                return
            self._cards[change.reader] = card
            await self._mirror.insert(reader, card)
        elif not change.present:
            await self._drop_card(change.reader, reader)

    async def _drop_card(self, name: str, reader: LocalReader) -> None:
        card = self._cards.pop(name, None)
        if card is not None:
            await self._mirror.remove(reader, forget_card=True)
            card.close()

    def _monitor(self, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: report reader and card changes until stopped."""

        def post(item: _Change | PcscError) -> None:
            asyncio.run_coroutine_threadsafe(self._changes.put(item), loop)

        known: dict[str, int] = {}
        try:
            while not self._stop.is_set():
                result, names = scard.SCardListReaders(self._context, [])
                if result == scard.SCARD_E_NO_READERS_AVAILABLE:
                    names = []
                else:
                    _check("SCardListReaders", result)
                names = [n for n in names if self._wanted(n)]
                for gone in set(known) - set(names):
                    del known[gone]
                    post(_Change(gone, None))
                states = [(n, known.get(n, scard.SCARD_STATE_UNAWARE)) for n in names]
                states.append((_PNP_NOTIFICATION, scard.SCARD_STATE_UNAWARE))
                result, states = scard.SCardGetStatusChange(self._context, scard.INFINITE, states)
                if self._stop.is_set() or result == scard.SCARD_E_CANCELLED:
                    return
                if result == scard.SCARD_E_TIMEOUT:
                    continue
                _check("SCardGetStatusChange", result)
                for name, event_state, atr in states:
                    if name == _PNP_NOTIFICATION:
                        continue
                    previous = known.get(name)
                    known[name] = event_state & ~scard.SCARD_STATE_CHANGED
                    if previous is not None and not event_state & scard.SCARD_STATE_CHANGED:
                        continue
                    if event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE):
                        known.pop(name, None)
                        post(_Change(name, None))
                    elif event_state & scard.SCARD_STATE_PRESENT and not (
                        event_state & scard.SCARD_STATE_MUTE
                    ):
                        post(_Change(name, True, bytes(atr)))
                    else:
                        post(_Change(name, False))
        except PcscError as error:
            post(error)
