"""asyncio adapter: the sans-IO reader as a :class:`ccid.usb.UsbDevice` a USB/IP server exports.

It only moves bytes and time: ep0 requests go to :class:`~ccid.control.ControlPipe`, bulk-OUT
bytes to :class:`~ccid.reader.CCIDReader`; IN transfers wait (parked, never answered empty) until
the reader has a message for them; a loop timer calls the reader when a time extension is due.

The card's ``transmit`` starts inline, in the bulk OUT that completed its XfrBlock
(:func:`~cardfloor.aio.eager.start_eagerly`), and becomes a task only if it has to wait: an
emulated card answers before the OUT transfer returns (no task, no loop turn), a remote card has
the APDU on its way before the OUT's completion is sent. Either way the answer is only queued
for bulk IN, so the host still sees the OUT complete first. A card whose ``transmit`` uses
:func:`asyncio.current_task` before its first wait (``asyncio.timeout``) must say so with a
class attribute ``start_inline = False``; its ``transmit`` then runs as a task from the start.

A card may also offer ``transmit_soon(apdu, answered)`` (see :data:`TransmitSoon`): the APDU
goes out at once and ``answered`` gets the response in the step that receives it (a remote
card's VSCard read), so the answer reaches a parked IN transfer with no task at all. It
returns a function that cancels: the answer is then dropped, as a cancelled ``transmit``'s is.

Every IN transfer takes its bytes from the reader in the same step that returns them, with no
await in between, so an IN transfer cancelled by CMD_UNLINK never loses data.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Iterable
from typing import ClassVar

from cardfloor.aio.eager import start
from cardfloor.log import get_logger

from .card import ICC
from .configuration import ReaderConfiguration
from .constants import NOTIFY_SLOT_CHANGE_SIZE
from .control import ControlPipe
from .descriptors import BULK_IN, BULK_OUT, INTERRUPT_IN, ReaderDescriptors
from .errors import CCIDRemoteProtocolError
from .events import APDUCancelled, APDURequested, CCIDReaderEvent, ICCReset
from .reader import CCIDReader
from .slot import SlotState
from .usb import DeviceSummary, SetupPacket, Stall

log = get_logger("ccid.device")

Answered = Callable[[bytes | Exception], None]
"""Gets a card's response to one APDU, or the exception its ``transmit`` would raise."""

TransmitSoon = Callable[[bytes, Answered], Callable[[], object]]
"""A card's optional ``transmit_soon(apdu, answered)``: ``transmit`` as a callback (see the
module); returns what cancels it. ``answered`` may be called before it returns."""


def _not_started() -> None:
    """The cancel of a ``transmit_soon`` still starting (see CCIDDevice._sync)."""


class CCIDDevice:
    """A virtual USB CCID reader with one slot. Cards come and go with :meth:`insert_card`
    and :meth:`remove_card`; a USB/IP server exports it as any :class:`~ccid.usb.UsbDevice`.
    """

    #: ``ccid.usb.UsbDevice``'s promise: no ``asyncio.current_task()`` before a first wait,
    #: so a USB/IP server may start each transfer inline (a bulk OUT never waits).
    start_inline: ClassVar[bool] = True

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        self.config = config if config is not None else ReaderConfiguration()
        self.descriptors = ReaderDescriptors.from_configuration(self.config)
        self._reader = CCIDReader(self.config)
        self._control = ControlPipe(self.descriptors, self._reader)
        self._card: ICC | None = None
        self._card_inline = True  # the card's start_inline (see the module)
        self._card_soon: TransmitSoon | None = None  # its transmit_soon, if inline
        # The cancels of transmit_soon calls awaiting their answer, by request.
        self._soon: dict[int, Callable[[], object]] = {}
        # Kept from the first call on the loop: under Python 3.11 each
        # asyncio.get_running_loop() is a getpid() system call, and there were three per APDU.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transmits: dict[int, asyncio.Task[None]] = {}
        # Parked IN transfers, woken when the reader has a message for them (as asyncio.Event
        # would, without its loop lookup per wait). At most the USB/IP connection's pending URBs.
        self._bulk_in_waiters: deque[asyncio.Future[None]] = deque()
        self._interrupt_waiters: deque[asyncio.Future[None]] = deque()
        # The same for transports that park a transfer as a callback (park_in).
        self._bulk_in_parked: deque[Callable[[], None]] = deque()
        self._interrupt_parked: deque[Callable[[], None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float = 0.0

    # -- the card side --------------------------------------------------------------------

    @property
    def card(self) -> ICC | None:
        """The card in the slot."""
        return self._card

    @property
    def slot_state(self) -> SlotState:
        """Absent, present-inactive or present-active."""
        return self._reader.slot_state

    @property
    def reader(self) -> CCIDReader:
        """The sans-IO reader behind this device (read its state; do not drive it)."""
        return self._reader

    def insert_card(self, card: ICC) -> None:
        """Put ``card`` in the slot (replacing any card there); the host is notified.

        Raises :class:`~ccid.errors.CCIDLocalProtocolError` (a ValueError) when the reader
        cannot hold its ATR; the slot is then as it was.
        """
        events = self._reader.insert_card(card.atr)
        self._card = card
        self._card_inline = getattr(card, "start_inline", True) is not False
        soon: TransmitSoon | None = getattr(card, "transmit_soon", None)
        self._card_soon = soon if self._card_inline else None
        self._sync(events)

    def remove_card(self) -> None:
        """Take the card out; an APDU it was working on is answered with an error at once."""
        events = self._reader.remove_card()
        self._card = None
        self._sync(events)

    async def aclose(self) -> None:
        """Stop the card's work and the timer (as a USB reset would) and wait for them."""
        tasks = list(self._transmits.values())
        self.reset()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- ccid.usb.UsbDevice ---------------------------------------------------------------

    @property
    def summary(self) -> DeviceSummary:
        """08E6:4433 (by default), full speed, one interface of class 0x0B."""
        return self.descriptors.summary

    async def control(self, setup: SetupPacket, data: bytes) -> bytes:
        """An ep0 request: standard and CCID class requests; :class:`Stall` for the rest."""
        try:
            answer, events = self._control.handle(setup, data)
        except Stall:
            self._sync()
            raise
        self._sync(events)
        return answer

    def take_in(self, endpoint: int, length: int) -> bytes | None:
        """``ccid.usb.ParkingDevice``: what :meth:`transfer_in` returns, None while it waits."""
        if endpoint == BULK_IN:
            if length <= 0:
                return b""
            data = self._reader.read_bulk_in(length)
            if not data:
                return None
            self._sync()
            return data
        if endpoint == INTERRUPT_IN:
            if length < NOTIFY_SLOT_CHANGE_SIZE:
                raise Stall(f"interrupt IN of {length} bytes cannot hold a NotifySlotChange")
            message = self._reader.read_interrupt_in()
            if message is None:
                return None
            self._sync()
            return message
        raise Stall(f"no IN endpoint 0x{endpoint:02X}")

    def park_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """``ccid.usb.ParkingDevice``: call ``wake`` once ``endpoint`` may have data."""
        parked = self._bulk_in_parked if endpoint == BULK_IN else self._interrupt_parked
        parked.append(wake)

    def unpark_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """``ccid.usb.ParkingDevice``: forget ``wake``."""
        parked = self._bulk_in_parked if endpoint == BULK_IN else self._interrupt_parked
        if wake in parked:
            parked.remove(wake)

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        """Bulk-IN: the next response, at most ``length`` bytes of it at a time. Interrupt-IN:
        the next NotifySlotChange. Both wait until there is one; neither returns b"" (but a
        bulk IN of ``length`` 0)."""
        waiters = self._bulk_in_waiters if endpoint == BULK_IN else self._interrupt_waiters
        while True:
            data = self.take_in(endpoint, length)  # raises Stall for a bad endpoint or length
            if data is not None:
                return data
            waiter = self._running_loop().create_future()
            waiters.append(waiter)
            try:
                await waiter
            finally:
                waiters.remove(waiter)

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        """Bulk-OUT bytes, accepted whole at once (the card starts on an APDU before this returns).

        A header announcing a message over dwMaxCCIDMessageLength stalls the transfer.
        """
        if endpoint != BULK_OUT:
            raise Stall(f"no OUT endpoint 0x{endpoint:02X}")
        reader = self._reader
        try:
            events = reader.receive_bulk_out(data, self._running_loop().time())
        except CCIDRemoteProtocolError as error:
            # The reader dropped the bytes; the next transfer starts a new message.
            self._sync()
            raise Stall(str(error)) from error
        self._sync(events)
        if reader.error is not None:
            # Commands before the bad header asked for the card, and were acted on above.
            raise Stall(str(reader.error)) from reader.error
        return len(data)

    def reset(self) -> None:
        """USB port reset: unconfigured, nothing in flight, the card (if any) unpowered."""
        events = self._control.reset()
        self._cancel_timer()
        self._sync(events)

    # -- internals ------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def _sync(self, events: Iterable[CCIDReaderEvent] = ()) -> None:
        """Act on the events a reader input returned; wake parked IN transfers; set the timer."""
        reader = self._reader
        for event in events:
            match event:
                case APDURequested(request, apdu):
                    card = self._card
                    assert card is not None, "the reader sends APDUs only to a present card"
                    soon = self._card_soon
                    if soon is not None:
                        # It may answer here too (a nested _sync queues the answer).
                        self._soon[request] = _not_started
                        try:
                            cancel = soon(apdu, functools.partial(self._answered, request))
                        except Exception as error:  # as from transmit: the card failed
                            self._answered(request, error)
                            continue
                        if request in self._soon:
                            self._soon[request] = cancel
                        continue
                    # Inline, the card may answer here (a nested _sync queues the answer).
                    task = start(
                        self._transmit(card, request, apdu),
                        eager=self._card_inline,
                        name=f"ccid-transmit-{request}",
                        loop=self._running_loop(),
                    )
                    if task is not None:
                        self._transmits[request] = task
                case APDUCancelled(request):
                    task = self._transmits.pop(request, None)
                    if task is not None:
                        task.cancel()
                    stop = self._soon.pop(request, None)
                    if stop is not None:
                        stop()
                case ICCReset(active):
                    if self._card is not None:
                        log.debug("ccid.icc_reset", active=active)
                        try:
                            self._card.reset()
                        except Exception as error:  # a card's fault must not end the reader
                            log.warning("ccid.card_reset_failed", error=repr(error))
        if reader.bulk_in_pending:
            _wake(self._bulk_in_waiters)
            if self._bulk_in_parked:
                _call_parked(self._bulk_in_parked)
        if reader.interrupt_pending:
            _wake(self._interrupt_waiters)
            if self._interrupt_parked:
                _call_parked(self._interrupt_parked)
        self._schedule_timer(reader.get_timer())

    async def _transmit(self, card: ICC, request: int, apdu: bytes) -> None:
        try:
            response = await card.transmit(apdu)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the card's failure must not end the reader
            log.warning("ccid.card_failed", request=request, error=repr(error))
            self._transmits.pop(request, None)
            events = self._reader.apdu_failed(request)
        else:
            self._transmits.pop(request, None)
            events = self._reader.apdu_response(request, response)
        self._sync(events)

    def _answered(self, request: int, result: bytes | Exception) -> None:
        """A ``transmit_soon`` card's answer to ``request`` (dropped once cancelled)."""
        if request not in self._soon:
            return
        del self._soon[request]
        if isinstance(result, Exception):
            log.warning("ccid.card_failed", request=request, error=repr(result))
            events = self._reader.apdu_failed(request)
        else:
            events = self._reader.apdu_response(request, result)
        self._sync(events)

    def _schedule_timer(self, deadline: float | None) -> None:
        # A timer due no later than the reader's deadline stays armed, and one left over when
        # no APDU is in flight is harmless: the reader ignores a call before its deadline, and
        # _on_timer re-arms for the real one. Arming and cancelling a timer per APDU cost 13%
        # of ccid-passthru's CPU with 1,000 busy readers (churn in the loop's timer heap).
        if deadline is None or (self._timer is not None and self._timer_deadline <= deadline):
            return
        self._cancel_timer()
        self._timer_deadline = deadline
        self._timer = self._running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = 0.0

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_deadline = 0.0
        self._sync(self._reader.handle_timer(self._running_loop().time()))


def _wake(waiters: deque[asyncio.Future[None]]) -> None:
    # Every parked transfer looks again (each takes its waiter out); one finds the message.
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _call_parked(parked: deque[Callable[[], None]]) -> None:
    # In the order they parked: the first takes the message (a nested _sync may wake those
    # parked again meanwhile), the others park again.
    woken = list(parked)
    parked.clear()
    for wake in woken:
        wake()
