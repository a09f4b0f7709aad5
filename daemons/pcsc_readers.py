"""Real PC/SC readers (through pyscard) as local readers: hotplug, card insert/remove, transmit.

pcsc-lite's calls block, so each runs in a thread: one monitor thread waits in
``SCardGetStatusChange`` (woken by ``SCardCancel`` to stop), and each connected card has its
own context and a one-thread executor, so APDUs to one card are serialised and never share a
context with the monitor (pcsc-lite contexts are not for concurrent use).

The card is shared with the client's own applications: the guest's APDUs run inside a PC/SC
transaction held while the guest keeps the card busy, and the card is reset on each handover
(:mod:`daemons.card_lease` says why and when).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from .card_lease import Action, CardLease, LeasePolicy, LeaseState
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


#: What a guest APDU gets when a host application kept the card past the bound: "no precise
#: diagnosis", which OpenSC reports as an error (SC_ERROR_CARD_CMD_FAILED) rather than retrying,
#: and which no card answers to a command that worked (OpenSC, iso7816.c, iso7816_check_sw).
CARD_BUSY_STATUS = b"\x6f\x00"


class PcscCard:
    """A card in a PC/SC reader, connected shared with T=0 or T=1; APDUs pass unchanged.

    With a :class:`LeasePolicy` (vscclient's default) the guest's APDUs run inside a PC/SC
    transaction (:class:`CardLease`); without one each APDU goes to the card on its own.
    """

    def __init__(self, reader: str, policy: LeasePolicy | None = None) -> None:
        self.reader = reader
        self._lease = None if policy is None else CardLease(policy)
        self._serial = asyncio.Lock() if policy is not None else None
        self._begin: asyncio.Future[None] | None = None
        self._release: asyncio.TimerHandle | None = None
        self._last_answer: float | None = None
        self.on_reset: Callable[[], Awaitable[None]] | None = None
        """Called after the card was reset on a handover (compare mode resets its twin)."""
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

    @property
    def lease(self) -> CardLease | None:
        """The guest's hold on the card (None: APDUs go without a transaction)."""
        return self._lease

    async def transmit(self, apdu: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if self._lease is None or self._serial is None:
            return await loop.run_in_executor(self._executor, self._transmit, apdu)
        async with self._serial:
            return await self._leased_transmit(loop, self._lease, apdu)

    async def _leased_transmit(
        self, loop: asyncio.AbstractEventLoop, lease: CardLease, apdu: bytes
    ) -> bytes:
        now = loop.time()
        if self._last_answer is not None:
            # The gaps inside a guest's operation are what the idle hold must cover.
            log.debug(
                "pcsc.guest_gap", reader=self.reader, ms=round((now - self._last_answer) * 1000, 1)
            )
        action = lease.apdu(now)
        try:
            if action in (Action.BEGIN, Action.AWAIT):
                if action is Action.BEGIN:
                    self._start_begin(loop)
                if not await self._wait_for_card(loop, lease):
                    log.warning(
                        "pcsc.card_busy",
                        reader=self.reader,
                        waited_s=lease.policy.wait,
                        answer=CARD_BUSY_STATUS.hex(),
                    )
                    return CARD_BUSY_STATUS
                action = lease.proceed()
                log.debug(
                    "pcsc.transaction_begun",
                    reader=self.reader,
                    waited_ms=round((loop.time() - now) * 1000, 1),
                )
            if action is Action.RESET_AND_TRANSMIT:
                response = await loop.run_in_executor(
                    self._executor, self._reset_and_transmit, apdu
                )
                if self.on_reset is not None:
                    await self.on_reset()
                return response
            return await loop.run_in_executor(self._executor, self._transmit, apdu)
        except BaseException:
            if lease.state is LeaseState.WAITING:  # cancelled while waiting: as if it gave up
                lease.gave_up(loop.time())
            elif lease.busy:
                lease.lost()
                self._executor.submit(self._end_transaction, lease.policy.reset)
            raise
        finally:
            if lease.busy:
                self._last_answer = answered = loop.time()
                lease.answered(answered)
                # A 61xx answer's prefetch (vscard.response_chain) and the read-ahead
                # (vscard.read_ahead) call transmit again in the same task step, so their
                # lease.apdu comes before this timer can fire, even with a hold of 0: they
                # read inside the hold.
                if self._release is None:
                    self._schedule_release(loop, lease)

    def _start_begin(self, loop: asyncio.AbstractEventLoop) -> None:
        begin = loop.run_in_executor(self._executor, self._begin_transaction)
        self._begin = begin
        begin.add_done_callback(self._on_begin)

    def _on_begin(self, begin: asyncio.Future[None]) -> None:
        """The event loop learns that ``SCardBeginTransaction`` returned (in time or late)."""
        lease = self._lease
        assert lease is not None
        self._begin = None
        if begin.cancelled() or begin.exception() is not None:
            lease.lost()
            return
        if lease.acquired(asyncio.get_running_loop().time()) is Action.END:
            log.info("pcsc.late_transaction_released", reader=self.reader)
            self._executor.submit(self._end_transaction, lease.policy.reset)

    async def _wait_for_card(self, loop: asyncio.AbstractEventLoop, lease: CardLease) -> bool:
        """Wait for the transaction until the lease's deadline; False: the guest gives up."""
        begin = self._begin
        assert begin is not None
        assert lease.deadline is not None
        try:
            await asyncio.wait_for(asyncio.shield(begin), max(0.0, lease.deadline - loop.time()))
        except TimeoutError:
            if lease.state is LeaseState.HELD:  # it came as the bound passed
                return True
            lease.gave_up(loop.time())
            return False
        return True

    def _schedule_release(self, loop: asyncio.AbstractEventLoop, lease: CardLease) -> None:
        # One timer at a time, never moved per APDU: the idle deadline only moves later, so
        # a timer that fires early finds the lease busy or not idle long enough, and
        # _on_idle sets the next one (or the next answer does).
        wake = lease.wake_at()
        self._release = None if wake is None else loop.call_at(wake, self._on_idle, loop, lease)

    def _on_idle(self, loop: asyncio.AbstractEventLoop, lease: CardLease) -> None:
        self._release = None
        if lease.tick(loop.time()) is Action.END:
            log.debug("pcsc.transaction_ended", reader=self.reader, reset=lease.policy.reset)
            self._executor.submit(self._end_transaction, lease.policy.reset)
        else:
            self._schedule_release(loop, lease)

    def _begin_transaction(self) -> None:
        """Thread: take the card (blocks while another application holds its transaction)."""
        result = scard.SCardBeginTransaction(self._card)
        if result == scard.SCARD_W_RESET_CARD:
            # Someone (we, at our last handover) reset the card: acknowledge it and ask again.
            self._reconnect(scard.SCARD_LEAVE_CARD)
            result = scard.SCardBeginTransaction(self._card)
        _check(f"SCardBeginTransaction({self.reader})", result)

    def _end_transaction(self, reset: bool) -> None:
        """Thread: give the card back, reset unless the state is kept."""
        disposition = scard.SCARD_RESET_CARD if reset else scard.SCARD_LEAVE_CARD
        result = scard.SCardEndTransaction(self._card, disposition)
        if result != scard.SCARD_S_SUCCESS:
            log.warning(
                "pcsc.end_transaction_failed",
                reader=self.reader,
                error=scard.SCardGetErrorMessage(result),
            )

    def _reset_and_transmit(self, apdu: bytes) -> bytes:
        self._reconnect(scard.SCARD_RESET_CARD)
        return self._transmit(apdu)

    def _reconnect(self, disposition: int) -> None:
        result, protocol = scard.SCardReconnect(
            self._card,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            disposition,
        )
        _check(f"SCardReconnect({self.reader})", result)
        self._pci = _pci(protocol)

    def _transmit(self, apdu: bytes) -> bytes:
        result, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        if result == scard.SCARD_W_RESET_CARD:
            # Another application reset the card between two of our APDUs (only possible
            # without our transaction); acknowledge the reset and send again.
            self._reconnect(scard.SCARD_LEAVE_CARD)
            result, response = scard.SCardTransmit(self._card, self._pci, list(apdu))
        _check(f"SCardTransmit({self.reader})", result)
        return bytes(response)

    async def cold_reset(self) -> None:
        lease = self._lease
        if lease is not None and self._serial is not None:
            async with self._serial:
                if not lease.reset_requested():
                    return  # the next transaction starts with a reset
        loop = asyncio.get_running_loop()
        # SCARD_UNPOWER_CARD would be the cold reset; pcsc-lite turns both into a reset of
        # the card, and a reset is what every application that shares the card also sees.
        await loop.run_in_executor(self._executor, self._reconnect, scard.SCARD_RESET_CARD)

    def close(self) -> None:
        lease = self._lease
        # A guest's login must not stay behind on the card for the next application.
        held = lease is not None and lease.state is LeaseState.HELD and lease.policy.reset
        if self._release is not None:
            self._release.cancel()

        def release() -> None:
            disposition = scard.SCARD_RESET_CARD if held else scard.SCARD_LEAVE_CARD
            scard.SCardDisconnect(self._card, disposition)
            scard.SCardReleaseContext(self._context)

        self._executor.submit(release)
        self._executor.shutdown(wait=False)


def first_pcsc_card(policy: LeasePolicy | None = None) -> PcscCard:
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
                return PcscCard(name, policy)
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

    def __init__(
        self, mirror: HostMirror, name: str | None = None, policy: LeasePolicy | None = None
    ) -> None:
        require_pyscard()
        self._mirror = mirror
        self._policy = policy
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
                card = await loop.run_in_executor(None, PcscCard, change.reader, self._policy)
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
