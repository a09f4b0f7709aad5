"""The CCID reader, sans-IO: bulk-OUT bytes in, bulk-IN and interrupt-IN messages out.

Every PC_to_RDR command gets exactly one answer of the type the spec gives it, echoing its
bSlot and bSeq, except an XfrBlock sent to the card, answered when the card is done (or with
an error if the card goes away first), and a PC_to_RDR_Abort, answered when both halves of
the abort procedure are in. The host learns of cards coming and going by a NotifySlotChange
on the interrupt endpoint, sent only on a real change.

Deliberate choices, each against a fault of QEMU's usb-ccid (QEMU's
``hw/usb/dev-smartcard-reader.c``):

- Extended APDU level: APDUs and responses up to 64 KiB pass whole; a message longer than
  dwMaxCCIDMessageLength - 10 is chained with wLevelParameter / bChainParameter.
- A command that comes while an XfrBlock is with the card gets CMD_SLOT_BUSY (0xE0).
- While the card works, a time extension (bStatus 0x80, bError 1) goes out every
  ``time_extension_interval`` seconds, well inside libccid's 3 s read timeout. Time enters
  only through :meth:`CCIDReader.receive_bulk_out` and :meth:`CCIDReader.handle_timer`.
- An answer is matched to its request, never to "the oldest one". libccid does not check
  bSeq on XfrBlock answers, so a late answer the host never read would become the answer to
  its next APDU: every new command first drops responses the host has not read (except the
  abort half that completes an abort procedure, so CMD_ABORTED still reaches the host).
- A card removed mid-APDU answers the XfrBlock at once (bStatus 0x42, bError ICC_MUTE).

Which command may come when, and what one that may not is answered, is the transaction table
of :mod:`ccid.transaction`; the reader keeps one :class:`Transaction` state and follows it.

Driving it follows docs/sans-io.md: each input returns the list of
:data:`~ccid.events.CCIDReaderEvent` it caused, for the side that holds the card; there is no
queue to poll. Bytes for the host are pulled per endpoint (:meth:`CCIDReader.read_bulk_in`,
:meth:`CCIDReader.read_interrupt_in`) rather than with ``data_to_send()``, because a USB host
polls its endpoints: the device answers an IN transfer when the host asks, with at most the
length it asks for. Unlike a stream's, a :class:`CCIDRemoteProtocolError` is not sticky: it
refuses (stalls) one transfer, and the next starts a new message. A call the reader cannot
carry out raises :class:`CCIDLocalProtocolError` and changes nothing.
"""

from __future__ import annotations

import itertools
import struct

from cardfloor.iso7816.atr import ATRFormatError, parse_atr
from cardfloor.iso7816.trace import command_trace, response_trace
from cardfloor.log import get_logger

from .codec import CommandDecoder, encode
from .configuration import ReaderConfiguration
from .constants import (
    GEMALTO_GET_FIRMWARE_VERSION,
    HEADER_SIZE,
    MAX_APDU_SIZE,
    TIME_EXTENSION_MULTIPLIER,
    ChainParameter,
    ClockCommand,
    CommandStatus,
    ICCStatus,
    LevelParameter,
    PowerSelect,
    SlotError,
)
from .descriptors import ReaderDescriptors
from .errors import CCIDLocalProtocolError, CCIDRemoteProtocolError
from .events import APDUCancelled, APDURequested, CCIDReaderEvent, ICCReset
from .messages import (
    Command,
    PC_to_RDR_Abort,
    PC_to_RDR_Escape,
    PC_to_RDR_GetParameters,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccClock,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_Mechanical,
    PC_to_RDR_ResetParameters,
    PC_to_RDR_Secure,
    PC_to_RDR_SetDataRateAndClockFrequency,
    PC_to_RDR_SetParameters,
    PC_to_RDR_T0APDU,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_DataRateAndClockFrequency,
    RDR_to_PC_Escape,
    RDR_to_PC_NotifySlotChange,
    RDR_to_PC_Parameters,
    RDR_to_PC_SlotStatus,
    Response,
    UnknownCommand,
)
from .parameters import STRUCTURE_SIZE, ProtocolParameters
from .response_queue import ResponseQueue
from .slot import Slot, SlotEvent, SlotState
from .transaction import BUSY, TRANSITIONS, Answer, Transaction, TransactionEvent

log = get_logger("ccid.reader")

_GEMALTO_VENDOR = 0x08E6
_TWO_WORDS = struct.Struct("<II")

# Commands whose response type is a SlotStatus, a DataBlock or a Parameters: used to answer
# busy and bad-slot errors with the response type the command calls for.
_SLOT_STATUS_COMMANDS = (
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccClock,
    PC_to_RDR_T0APDU,
    PC_to_RDR_Mechanical,
    PC_to_RDR_Abort,
    UnknownCommand,
)
_DATA_BLOCK_COMMANDS = (PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, PC_to_RDR_Secure)
_PARAMETERS_COMMANDS = (
    PC_to_RDR_GetParameters,
    PC_to_RDR_ResetParameters,
    PC_to_RDR_SetParameters,
)

# Module names for the states, events and answers the reader tests: a class attribute of an
# enum costs a lookup through its metaclass on every use.
_IDLE = Transaction.IDLE
_COMMAND_CHAIN = Transaction.COMMAND_CHAIN
_CARD_BUSY = Transaction.CARD_BUSY
_RESPONSE_CHAIN = Transaction.RESPONSE_CHAIN
_ABORT_REQUESTED = Transaction.ABORT_REQUESTED
_ABORT_COMMANDED = Transaction.ABORT_COMMANDED
_XFR_BLOCK = TransactionEvent.XFR_BLOCK
_XFR_BEGIN = TransactionEvent.XFR_BEGIN
_XFR_NEXT_RESPONSE = TransactionEvent.XFR_NEXT_RESPONSE
_XFR_BAD_LEVEL = TransactionEvent.XFR_BAD_LEVEL
_POWER = TransactionEvent.POWER
_OTHER_COMMAND = TransactionEvent.OTHER_COMMAND
_TO_CARD = Answer.TO_CARD
_NEXT_COMMAND = Answer.NEXT_COMMAND
_NEXT_BLOCK = Answer.NEXT_BLOCK
_BAD_LEVEL = Answer.BAD_LEVEL
_SLOT_BUSY = Answer.SLOT_BUSY
_ABORT_DONE = Answer.ABORT_DONE

_XFR_EVENTS: dict[int, TransactionEvent] = {
    LevelParameter.BEGIN_AND_END: _XFR_BLOCK,
    LevelParameter.BEGIN: _XFR_BEGIN,
    LevelParameter.CONTINUE: TransactionEvent.XFR_CONTINUE,
    LevelParameter.END: TransactionEvent.XFR_END,
    LevelParameter.NEXT_RESPONSE: _XFR_NEXT_RESPONSE,
}


class CCIDReader:
    """A one-slot CCID reader at extended APDU level. Create one per USB device."""

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        self._config = config if config is not None else ReaderConfiguration()
        # Bound once: with debug off each call is then a no-op method, where the module's
        # lazy proxy would build a logger per call (measurable on the per-APDU path).
        self._log = log.bind()
        # The class descriptor's clock and data rate are what SetDataRateAndClockFrequency
        # reports; building it from the same configuration keeps the two in step.
        self._ccid = ReaderDescriptors.from_configuration(self._config).ccid
        self._max_data = self._config.max_message_length - HEADER_SIZE
        self._decoder = CommandDecoder(max_message_length=self._config.max_message_length)
        self._slot = Slot()
        self._responses = ResponseQueue()
        self._notify_pending = False
        # What the input being handled asks of the card side; handed over as it returns.
        self._events: list[CCIDReaderEvent] = []
        self._error: CCIDRemoteProtocolError | None = None
        self._requests = itertools.count(1)
        self._state = _IDLE
        # What the state holds: each field means something in the states named only.
        self._bSeq = 0  # card busy: the XfrBlock's; aborting: the held half's
        self._request = 0  # card busy: the APDU with the card
        self._deadline = 0.0  # card busy: when the next time extension is due
        self._chain = bytearray()  # command chaining: the blocks so far
        self._rest = b""  # response chaining: what the host has yet to ask for

    # -- state ----------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete bulk-OUT command received so far."""
        return self._decoder.buffered

    @property
    def slot_state(self) -> SlotState:
        """Absent, present-inactive or present-active."""
        return self._slot.state

    @property
    def atr(self) -> bytes | None:
        """The present card's ATR."""
        atr = self._slot.atr
        return None if atr is None else atr.raw

    @property
    def parameters(self) -> ProtocolParameters | None:
        """The protocol parameters in force while a card is present."""
        return self._slot.parameters

    @property
    def transaction(self) -> Transaction:
        """Where the transaction stands: idle, chaining, card busy or aborting."""
        return self._state

    @property
    def busy(self) -> bool:
        """An XfrBlock is with the card, or an abort procedure is under way."""
        return self._state in BUSY

    @property
    def bulk_in_pending(self) -> bool:
        """A response waits for a bulk-IN transfer."""
        return bool(self._responses)

    @property
    def queued_responses(self) -> int:
        """Responses not yet read to their end."""
        return len(self._responses)

    @property
    def interrupt_pending(self) -> bool:
        """A NotifySlotChange waits for an interrupt-IN transfer."""
        return self._notify_pending

    @property
    def error(self) -> CCIDRemoteProtocolError | None:
        """What the last :meth:`receive_bulk_out` held instead of raising, or None.

        Set when that call returned the events of commands that came before a bad header: act
        on them, then refuse the transfer as if the call had raised.
        """
        return self._error

    # -- input from the host --------------------------------------------------------------

    def receive_bulk_out(
        self, data: bytes | bytearray | memoryview, now: float
    ) -> list[CCIDReaderEvent]:
        """Consume bulk-OUT bytes (split anywhere) at time ``now``; answer what they complete.

        Returns what the commands ask of the card side. Raises
        :class:`CCIDRemoteProtocolError` (field ``dwLength``) when a header announces a message
        longer than dwMaxCCIDMessageLength: commands before it were answered, the bytes after it
        are dropped, and the next call starts a new message.
        If those commands asked something of the card side, their events are returned instead
        and :attr:`error` holds the error.
        """
        events: list[CCIDReaderEvent] = []
        self._events = events
        self._error = None
        self._decoder.feed(data)
        while True:
            try:
                command = self._decoder.next_command()
            except CCIDRemoteProtocolError as error:
                self._log.warning("ccid.bad_message", field=error.field, value=error.value)
                if not events:
                    raise
                self._error = error
                return events
            if command is None:
                return events
            self._handle(command, now)

    def read_bulk_in(self, max_length: int) -> bytes:
        """Take up to ``max_length`` bytes of the next response (b"" when there is none).

        A response longer than ``max_length`` is handed out over several calls; one call
        never mixes two responses.
        """
        return self._responses.read(max_length)

    def read_interrupt_in(self) -> bytes | None:
        """Take the pending NotifySlotChange (2 bytes), or None when nothing changed."""
        if not self._notify_pending:
            return None
        self._notify_pending = False
        message = RDR_to_PC_NotifySlotChange.for_slot0(
            present=self._slot.state is not SlotState.ABSENT, changed=True
        )
        self._log.debug("ccid.notify_slot_change", bmSlotICCState=message.bmSlotICCState.hex())
        return encode(message)

    def abort_request(self, bSlot: int, bSeq: int) -> list[CCIDReaderEvent]:
        """The ABORT class request (wValue = bSeq << 8 | bSlot) arrived on ep0.

        The command in progress is answered with CMD_ABORTED; the PC_to_RDR_Abort with the
        same bSeq is answered once both have arrived. Raises :class:`CCIDRemoteProtocolError`
        (field ``bSlot``: stall the request) when the slot does not exist.
        """
        if bSlot != 0:
            raise CCIDRemoteProtocolError("no such slot", field="bSlot", value=bSlot)
        events: list[CCIDReaderEvent] = []
        self._events = events
        self._log.info("ccid.abort_request", bSeq=bSeq)
        if self._state is _ABORT_COMMANDED and bSeq == self._bSeq:
            event = TransactionEvent.PAIRED_ABORT_REQUEST
        else:
            event = TransactionEvent.ABORT_REQUEST
        answer, next_state = TRANSITIONS[self._state, event]
        if answer is not _ABORT_DONE:
            self._drop_unread(bSeq)
        if answer is Answer.HELD_BAD_SEQ:
            # The held PC_to_RDR_Abort belongs to another procedure: it cannot complete.
            self._answer(self._failure(PC_to_RDR_Abort(0, self._bSeq), SlotError.BAD_SEQ))
        self._abort_half(answer, next_state, bSeq)
        return events

    def discard_partial_command(self) -> None:
        """Forget the bytes of a command not yet complete (CLEAR_FEATURE(HALT) on bulk-OUT).

        No command is lost with them, so the card side has nothing to do.
        """
        if self._decoder.buffered:
            self._log.info("ccid.partial_command_dropped", length=self._decoder.buffered)
        self._decoder.clear()

    def reset(self) -> list[CCIDReaderEvent]:
        """USB reset or SET_CONFIGURATION: drop every message, command and answer in flight.

        The card stays in the slot but loses power, as with a physical reader.
        """
        events: list[CCIDReaderEvent] = []
        self._events = events
        self._decoder.clear()
        self._responses.clear()
        self._notify_pending = False
        answer, next_state = TRANSITIONS[self._state, TransactionEvent.USB_RESET]
        if answer is Answer.CANCELLED:
            events.append(APDUCancelled(self._request))
        self._go(next_state)
        if self._slot.apply(SlotEvent.USB_RESET) is SlotState.PRESENT_ACTIVE:
            events.append(ICCReset(active=False))
        return events

    # -- input from the card side ---------------------------------------------------------

    def insert_card(self, atr: bytes) -> list[CCIDReaderEvent]:
        """A card arrived (replacing any card present).

        Raises :class:`CCIDLocalProtocolError` (a ValueError; field ``ATR.<part>``) for an ATR
        the reader cannot hold, leaving any card present in place.
        """
        try:
            parsed = parse_atr(atr)
        except ATRFormatError as error:
            raise CCIDLocalProtocolError(
                error.reason, field=f"ATR.{error.field}", value=error.value
            ) from error
        events: list[CCIDReaderEvent] = []
        self._events = events
        if self._slot.state is not SlotState.ABSENT:
            self._card_gone()
        self._slot.apply(SlotEvent.INSERT, parsed)
        self._notify_pending = True
        self._log.info("ccid.card_inserted", atr=atr.hex())
        return events

    def remove_card(self) -> list[CCIDReaderEvent]:
        """The card left. An XfrBlock it was working on is answered with ICC_MUTE at once."""
        events: list[CCIDReaderEvent] = []
        if self._slot.state is SlotState.ABSENT:
            return events
        self._events = events
        self._card_gone()
        self._slot.apply(SlotEvent.REMOVE)
        self._notify_pending = True
        self._log.info("ccid.card_removed")
        return events

    def apdu_response(self, request: int, response: bytes) -> list[CCIDReaderEvent]:
        """The card answered APDU ``request`` with ``response`` (data and SW1 SW2)."""
        events: list[CCIDReaderEvent] = []
        self._events = events
        if not self._card_done(request, TransactionEvent.CARD_ANSWERED):
            return events
        bSeq = self._bSeq
        self._log.debug("ccid.apdu", bSeq=bSeq, response=response_trace(response))
        if len(response) > MAX_APDU_SIZE:
            self._log.warning("ccid.response_too_long", bSeq=bSeq, length=len(response))
            self._go(_IDLE)
            self._answer(self._data_block_failure(bSeq, SlotError.XFR_OVERRUN))
            return events
        self._rest = response
        self._send_response_block(bSeq, first=True)
        return events

    def apdu_failed(self, request: int) -> list[CCIDReaderEvent]:
        """The card gave no answer to APDU ``request``: the host gets ICC_MUTE."""
        events: list[CCIDReaderEvent] = []
        self._events = events
        if self._card_done(request, TransactionEvent.CARD_FAILED):
            self._answer(self._data_block_failure(self._bSeq, SlotError.ICC_MUTE))
        return events

    # -- time -----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None when no timer is needed."""
        return self._deadline if self._state is _CARD_BUSY else None

    def handle_timer(self, now: float) -> list[CCIDReaderEvent]:
        """Send a time extension if one is due at ``now`` and the host has read everything."""
        events: list[CCIDReaderEvent] = []
        if self._state is not _CARD_BUSY or now < self._deadline:
            return events
        self._events = events
        # An unread message means the host is not waiting yet; one extension per read.
        if not self._responses:
            self._answer(
                RDR_to_PC_DataBlock(
                    0,
                    self._bSeq,
                    self._slot.icc_status,
                    CommandStatus.TIME_EXTENSION,
                    TIME_EXTENSION_MULTIPLIER,
                )
            )
        self._deadline = now + self._config.time_extension_interval
        return events

    # -- commands -------------------------------------------------------------------------

    def _handle(self, command: Command, now: float) -> None:
        self._log.debug(
            "ccid.command",
            bMessageType=type(command).__name__,
            bSlot=command.bSlot,
            bSeq=command.bSeq,
            dwLength=len(command.abData),
        )
        if command.bSlot != 0:
            self._drop_unread(command.bSeq)
            self._answer(self._failure(command, SlotError.BAD_SLOT, ICCStatus.NOT_PRESENT))
            return
        state = self._state
        if isinstance(command, PC_to_RDR_XfrBlock):
            event = _XFR_EVENTS.get(command.wLevelParameter, _XFR_BAD_LEVEL)
            if event is _XFR_NEXT_RESPONSE and command.abData:
                event = _XFR_BAD_LEVEL
        elif isinstance(command, PC_to_RDR_Abort):
            if state is _ABORT_REQUESTED and command.bSeq == self._bSeq:
                event = TransactionEvent.PAIRED_ABORT_COMMAND
            else:
                event = TransactionEvent.ABORT_COMMAND
        elif isinstance(command, PC_to_RDR_IccPowerOn | PC_to_RDR_IccPowerOff):
            event = _POWER
        else:
            event = _OTHER_COMMAND
        answer, next_state = TRANSITIONS[state, event]
        if answer is not _ABORT_DONE:
            self._drop_unread(command.bSeq)
        if isinstance(command, PC_to_RDR_Abort):
            self._abort_command(command, answer, next_state)
        elif answer is _SLOT_BUSY:
            self._answer(self._failure(command, SlotError.CMD_SLOT_BUSY))
        elif isinstance(command, PC_to_RDR_XfrBlock):
            self._xfr_block(command, event, answer, next_state, now)
        elif isinstance(command, PC_to_RDR_IccPowerOn):
            # Only an accepted one moves the transaction (a chain in progress is forgotten).
            if self._power_on(command):
                self._go(next_state)
        elif isinstance(command, PC_to_RDR_IccPowerOff):
            if self._power_off(command):
                self._go(next_state)
        else:
            self._other_command(command)

    def _other_command(self, command: Command) -> None:
        match command:
            case PC_to_RDR_GetSlotStatus():
                self._slot_status(command)
            case PC_to_RDR_GetParameters() | PC_to_RDR_ResetParameters():
                self._get_parameters(command)
            case PC_to_RDR_SetParameters():
                self._set_parameters(command)
            case PC_to_RDR_Escape():
                self._escape(command)
            case PC_to_RDR_IccClock():
                self._icc_clock(command)
            case PC_to_RDR_SetDataRateAndClockFrequency():
                self._set_data_rate(command)
            case _:
                # T0APDU, Secure (bPINSupport 0), Mechanical (dwMechanical 0) and unknown
                # message types: not supported, in the response type each one calls for.
                self._answer(self._failure(command, SlotError.CMD_NOT_SUPPORTED))

    def _power_on(self, command: PC_to_RDR_IccPowerOn) -> bool:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        elif command.bPowerSelect > max(PowerSelect):
            self._answer(self._failure(command, SlotError.BAD_OFFSET_7))
        elif self._slot.atr is None:
            self._answer(self._failure(command, SlotError.ICC_MUTE))
        else:
            self._slot.apply(SlotEvent.POWER_ON)
            self._events.append(ICCReset(active=True))
            self._answer(
                RDR_to_PC_DataBlock(
                    0, command.bSeq, self._slot.icc_status, abData=self._slot.atr.raw
                )
            )
            return True
        return False

    def _power_off(self, command: PC_to_RDR_IccPowerOff) -> bool:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
            return False
        if self._slot.apply(SlotEvent.POWER_OFF) is SlotState.PRESENT_ACTIVE:
            self._events.append(ICCReset(active=False))
        # Powering off an empty slot is done already: libccid treats a failure as an error.
        self._answer(RDR_to_PC_SlotStatus(0, command.bSeq, self._slot.icc_status))
        return True

    def _slot_status(self, command: PC_to_RDR_GetSlotStatus) -> None:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        else:
            # No card is a state, not a failure (bStatus 0x02, as libccid expects).
            self._answer(RDR_to_PC_SlotStatus(0, command.bSeq, self._slot.icc_status))

    def _xfr_block(
        self,
        command: PC_to_RDR_XfrBlock,
        event: TransactionEvent,
        answer: Answer,
        next_state: Transaction,
        now: float,
    ) -> None:
        if self._slot.state is not SlotState.PRESENT_ACTIVE:
            self._go(_IDLE)
            self._answer(self._failure(command, SlotError.ICC_MUTE))
            return
        if answer is _BAD_LEVEL:
            self._go(next_state)
            self._answer(self._failure(command, SlotError.BAD_LEVELPARAMETER))
            return
        if answer is _NEXT_BLOCK:
            self._send_response_block(command.bSeq, first=False)
            return
        data = command.abData
        starts = event is _XFR_BLOCK or event is _XFR_BEGIN
        if (0 if starts else len(self._chain)) + len(data) > MAX_APDU_SIZE:
            self._go(_IDLE)
            self._answer(self._failure(command, SlotError.XFR_OVERRUN))
            return
        if answer is _NEXT_COMMAND:
            if starts:
                self._chain = bytearray(data)
            else:
                self._chain += data
            self._go(next_state)
            self._answer(
                RDR_to_PC_DataBlock(
                    0,
                    command.bSeq,
                    self._slot.icc_status,
                    bChainParameter=ChainParameter.NEXT_COMMAND,
                )
            )
            return
        assert answer is _TO_CARD
        apdu = data if event is _XFR_BLOCK else bytes(self._chain) + data
        self._go(next_state)
        request = next(self._requests)
        self._request = request
        self._bSeq = command.bSeq
        self._deadline = now + self._config.time_extension_interval
        self._log.debug(
            "ccid.apdu", bSeq=command.bSeq, request=request, command=command_trace(apdu)
        )
        self._events.append(APDURequested(request, apdu))

    def _get_parameters(self, command: PC_to_RDR_GetParameters | PC_to_RDR_ResetParameters) -> None:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        elif self._slot.state is SlotState.ABSENT:
            self._answer(self._failure(command, SlotError.ICC_MUTE))
        else:
            if isinstance(command, PC_to_RDR_ResetParameters):
                self._slot.reset_parameters()
            self._answer(self._parameters(command.bSeq))

    def _set_parameters(self, command: PC_to_RDR_SetParameters) -> None:
        size = STRUCTURE_SIZE.get(command.bProtocolNum)
        if self._slot.state is SlotState.ABSENT:
            self._answer(self._failure(command, SlotError.ICC_MUTE))
        elif size is None:
            self._answer(self._failure(command, SlotError.BAD_OFFSET_7))
        elif len(command.abData) != size:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        else:
            # At APDU level nothing is framed with these, so any values are accepted and kept.
            self._slot.parameters = ProtocolParameters(command.bProtocolNum, command.abData)
            self._answer(self._parameters(command.bSeq))

    def _escape(self, command: PC_to_RDR_Escape) -> None:
        if (
            self._config.idVendor == _GEMALTO_VENDOR
            and command.abData == GEMALTO_GET_FIRMWARE_VERSION
        ):
            self._answer(
                RDR_to_PC_Escape(
                    0,
                    command.bSeq,
                    self._slot.icc_status,
                    abData=self._config.firmware_id.encode(),
                )
            )
        else:
            # Gemalto's GET_FIRMWARE_FEATURES (0x6A) among others: libccid accepts the failure.
            self._answer(self._failure(command, SlotError.CMD_NOT_SUPPORTED))

    def _icc_clock(self, command: PC_to_RDR_IccClock) -> None:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        elif self._slot.state is SlotState.ABSENT:
            self._answer(self._failure(command, SlotError.ICC_MUTE))
        elif command.bClockCommand != ClockCommand.RESTART:
            # The clock never stops (dwFeatures has no CLOCK_STOP); restarting it is a no-op.
            self._answer(self._failure(command, SlotError.BAD_OFFSET_7))
        else:
            self._answer(RDR_to_PC_SlotStatus(0, command.bSeq, self._slot.icc_status))

    def _set_data_rate(self, command: PC_to_RDR_SetDataRateAndClockFrequency) -> None:
        if len(command.abData) != _TWO_WORDS.size:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
            return
        clock, rate = _TWO_WORDS.unpack(command.abData)
        # Clock and rate are automatic (dwFeatures 0x10, 0x20): only the values in use stand.
        if clock != self._ccid.dwDefaultClock:
            self._answer(self._failure(command, SlotError.BAD_CLOCK_FREQUENCY))
        elif rate != self._ccid.dwDataRate:
            self._answer(self._failure(command, SlotError.BAD_DATA_RATE))
        else:
            self._answer(self._data_rate(command.bSeq))

    def _abort_command(
        self, command: PC_to_RDR_Abort, answer: Answer, next_state: Transaction
    ) -> None:
        if command.abData:
            self._answer(self._failure(command, SlotError.BAD_DWLENGTH))
        elif answer is _SLOT_BUSY:
            self._answer(self._failure(command, SlotError.CMD_SLOT_BUSY))
        elif answer is Answer.BAD_SEQ:
            self._answer(self._failure(command, SlotError.BAD_SEQ))
        else:
            self._abort_half(answer, next_state, command.bSeq)

    def _abort_half(self, answer: Answer, next_state: Transaction, bSeq: int) -> None:
        """An abort half the table takes: the APDU with the card (if any) ends CMD_ABORTED;
        this half is then held, or with the other one held the abort is answered."""
        if answer is Answer.ABORTED:
            self._events.append(APDUCancelled(self._request))
            self._answer(self._data_block_failure(self._bSeq, SlotError.CMD_ABORTED))
        elif answer is _ABORT_DONE:
            self._answer(RDR_to_PC_SlotStatus(0, bSeq, self._slot.icc_status))
        self._go(next_state)
        self._bSeq = bSeq

    # -- helpers --------------------------------------------------------------------------

    def _answer(self, response: Response) -> None:
        self._log.debug(
            "ccid.response",
            bMessageType=type(response).__name__,
            bSeq=response.bSeq,
            bStatus=response.bStatus,
            bError=response.bError,
        )
        self._responses.put(encode(response))

    def _go(self, state: Transaction) -> None:
        """Move to ``state``; a chaining state left behind gives its buffer up."""
        left = self._state
        self._state = state
        if left is not state:
            if left is _COMMAND_CHAIN:
                self._chain = bytearray()
            elif left is _RESPONSE_CHAIN:
                self._rest = b""

    def _send_response_block(self, bSeq: int, *, first: bool) -> None:
        """The next block of the response; after the last one the reader is idle."""
        remaining = self._rest
        block, rest = remaining[: self._max_data], remaining[self._max_data :]
        if rest:
            self._rest = rest
        else:
            self._go(_IDLE)
        if first:
            chain = ChainParameter.BEGIN if rest else ChainParameter.BEGIN_AND_END
        else:
            chain = ChainParameter.CONTINUE if rest else ChainParameter.END
        self._answer(
            RDR_to_PC_DataBlock(0, bSeq, self._slot.icc_status, bChainParameter=chain, abData=block)
        )

    def _card_done(self, request: int, event: TransactionEvent) -> bool:
        """The card is done with ``request``: False when that is not the APDU it has."""
        if self._state is not _CARD_BUSY or request != self._request:
            self._log.debug("ccid.late_answer_dropped", request=request)
            return False
        self._go(TRANSITIONS[_CARD_BUSY, event].next_state)
        return True

    def _card_gone(self) -> None:
        """The card left: answer its XfrBlock, forget chained blocks."""
        answer, next_state = TRANSITIONS[self._state, TransactionEvent.CARD_GONE]
        if answer is Answer.GONE:
            self._events.append(APDUCancelled(self._request))
            self._answer(
                RDR_to_PC_DataBlock(
                    0,
                    self._bSeq,
                    ICCStatus.NOT_PRESENT,
                    CommandStatus.FAILED,
                    SlotError.ICC_MUTE,
                )
            )
        self._go(next_state)

    def _drop_unread(self, bSeq: int) -> None:
        """A new command: what the host has not read it will never read (see the module doc).

        The half of an abort procedure that completes it keeps them: the host reads the
        aborted command's CMD_ABORTED answer, then the abort's SlotStatus.
        """
        dropped = self._responses.clear()
        if dropped:
            self._log.warning("ccid.unread_responses_dropped", count=dropped, bSeq=bSeq)

    def _data_block_failure(self, bSeq: int, error: SlotError) -> RDR_to_PC_DataBlock:
        return RDR_to_PC_DataBlock(0, bSeq, self._slot.icc_status, CommandStatus.FAILED, error)

    def _parameters(self, bSeq: int) -> RDR_to_PC_Parameters:
        return RDR_to_PC_Parameters(
            0, bSeq, self._slot.icc_status, CommandStatus.PROCESSED, 0, *self._parameter_fields()
        )

    def _parameter_fields(self) -> tuple[int, bytes]:
        parameters = self._slot.parameters
        if parameters is None:
            return 0, b""
        return parameters.bProtocolNum, parameters.abProtocolDataStructure

    def _data_rate(self, bSeq: int) -> RDR_to_PC_DataRateAndClockFrequency:
        return RDR_to_PC_DataRateAndClockFrequency(
            0,
            bSeq,
            self._slot.icc_status,
            dwClockFrequency=self._ccid.dwDefaultClock,
            dwDataRate=self._ccid.dwDataRate,
        )

    def _failure(
        self, command: Command, error: SlotError, icc: ICCStatus | None = None
    ) -> Response:
        """The failed answer to ``command``, in the response type the command calls for."""
        head = (
            command.bSlot,
            command.bSeq,
            self._slot.icc_status if icc is None else icc,
            CommandStatus.FAILED,
            int(error),
        )
        if isinstance(command, _DATA_BLOCK_COMMANDS):
            return RDR_to_PC_DataBlock(*head)
        if isinstance(command, _PARAMETERS_COMMANDS):
            return RDR_to_PC_Parameters(*head, *self._parameter_fields())
        if isinstance(command, PC_to_RDR_Escape):
            return RDR_to_PC_Escape(*head)
        if isinstance(command, PC_to_RDR_SetDataRateAndClockFrequency):
            return RDR_to_PC_DataRateAndClockFrequency(
                *head, self._ccid.dwDefaultClock, self._ccid.dwDataRate
            )
        assert isinstance(command, _SLOT_STATUS_COMMANDS)
        return RDR_to_PC_SlotStatus(*head)
