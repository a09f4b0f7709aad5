"""The reader's transaction, cell by cell: in each state CCID rev 1.1 gives slot 0 (idle,
command chaining, card busy, response chaining, an abort with one half in), each thing that
can happen, what the host and the card side get, and where the reader is left.

The expectations are written here from the spec (one command at a time, CMD_SLOT_BUSY for a
second one; §5.3.1 the abort handshake; §6.1.4 wLevelParameter and §6.2.1 bChainParameter
at extended APDU level) and libccid's use of it, not read from
:data:`ccid.transaction.TRANSITIONS`; the last tests check that the table has exactly the
cells tested here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from ccid import CCIDRemoteProtocolError, ReaderConfiguration
from ccid.card import TEST_ATR
from ccid.codec import decode_response, encode
from ccid.constants import ChainParameter, CommandStatus, ICCStatus, SlotError
from ccid.events import APDUCancelled, APDURequested, ICCReset
from ccid.messages import (
    Command,
    PC_to_RDR_Abort,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_SlotStatus,
    Response,
)
from ccid.transaction import TRANSITIONS, Transaction, TransactionEvent

from .card_side import RecordingReader

IDLE = Transaction.IDLE
COMMAND_CHAIN = Transaction.COMMAND_CHAIN
CARD_BUSY = Transaction.CARD_BUSY
RESPONSE_CHAIN = Transaction.RESPONSE_CHAIN
ABORT_REQUESTED = Transaction.ABORT_REQUESTED
ABORT_COMMANDED = Transaction.ABORT_COMMANDED
E = TransactionEvent

ACTIVE = ICCStatus.PRESENT_ACTIVE
INACTIVE = ICCStatus.PRESENT_INACTIVE
NO_ICC = ICCStatus.NOT_PRESENT
FAILED = CommandStatus.FAILED
OK = b"\x90\x00"
SELECT = bytes.fromhex("00A4040007A0000000790100")
FIRST = bytes.fromhex("00A40400")  # the block that begins the chained command in progress
LONG = bytes(i % 251 for i in range(598)) + OK  # three 261-byte messages' worth
SMALL = ReaderConfiguration(serial="TEST", max_message_length=271)  # 261 data bytes
BLOCK = 261

#: The states in which the spec has the reader answer another command CMD_SLOT_BUSY.
BUSY_STATES = {CARD_BUSY, ABORT_REQUESTED, ABORT_COMMANDED}


@dataclass(frozen=True)
class ToCard:
    """APDURequested with this APDU (its request number is the reader's business)."""

    apdu: bytes


CANCELLED = "the APDU with the card is cancelled"
POWERED_DOWN = ICCReset(active=False)


class Host:
    """libccid's side of the pipes and the card side, for one transaction."""

    def __init__(self) -> None:
        self.reader = RecordingReader(SMALL)
        self.request = 0  # the APDU with the card, once one went there

    def send(self, command: Command) -> None:
        self.reader.receive_bulk_out(encode(command), 0.0)

    def answers(self) -> list[Response]:
        out = []
        while data := self.reader.read_bulk_in(1 << 17):
            out.append(decode_response(data))
        return out

    def card_side(self) -> list[object]:
        out: list[object] = []
        for event in self.reader.take_events():
            if isinstance(event, APDURequested):
                self.request = event.request
                out.append(ToCard(event.apdu))
            elif isinstance(event, APDUCancelled):
                out.append(CANCELLED if event.request == self.request else event)
            else:
                out.append(event)
        return out


# -- the reader in each state (everything before it read, bSeq 9 kept for what comes next) --


def in_state(state: Transaction) -> Host:
    host = Host()
    host.reader.insert_card(TEST_ATR)
    host.send(PC_to_RDR_IccPowerOn(0, 0))
    if state is COMMAND_CHAIN:
        host.send(PC_to_RDR_XfrBlock(0, 1, FIRST, 0, 0x0001))
    elif state is CARD_BUSY:
        host.send(PC_to_RDR_XfrBlock(0, 2, SELECT))
    elif state is RESPONSE_CHAIN:
        host.send(PC_to_RDR_XfrBlock(0, 2, SELECT))
        host.card_side()
        host.reader.apdu_response(host.request, LONG)
    elif state is ABORT_REQUESTED:
        host.reader.abort_request(0, 7)
    elif state is ABORT_COMMANDED:
        host.send(PC_to_RDR_Abort(0, 7))
    host.answers()
    host.card_side()
    assert host.reader.transaction is state
    return host


# -- what can happen --------------------------------------------------------------------------

Happening = Callable[[Host], object]


def command(message: Command) -> Happening:
    return lambda host: host.send(message)


def xfr(level: int, data: bytes = b"") -> Happening:
    return command(PC_to_RDR_XfrBlock(0, 9, data, 0, level))


WHOLE = xfr(0x0000, SELECT)
BEGIN = xfr(0x0001, b"\x80\xca")
CONTINUE = xfr(0x0003, b"\x9f")
END = xfr(0x0002, b"\x00")
NEXT = xfr(0x0010)
LEVEL_20 = xfr(0x0020)
POWER_OFF = command(PC_to_RDR_IccPowerOff(0, 9))
STATUS = command(PC_to_RDR_GetSlotStatus(0, 9))
ABORT_9 = command(PC_to_RDR_Abort(0, 9))
ABORT_7 = command(PC_to_RDR_Abort(0, 7))  # the bSeq of the half held in the abort states


def REQUEST_9(host: Host) -> object:
    return host.reader.abort_request(0, 9)


def REQUEST_7(host: Host) -> object:
    return host.reader.abort_request(0, 7)


def ANSWER(host: Host) -> None:
    host.reader.apdu_response(host.request, OK)


def ANSWER_LONG(host: Host) -> None:
    host.reader.apdu_response(host.request, LONG)


def NO_ANSWER(host: Host) -> None:
    host.reader.apdu_failed(host.request)


def REMOVE(host: Host) -> None:
    host.reader.remove_card()


def USB_RESET(host: Host) -> None:
    host.reader.reset()


# -- what the host gets -------------------------------------------------------------------------

SLOT_BUSY_BLOCK = RDR_to_PC_DataBlock(0, 9, ACTIVE, FAILED, SlotError.CMD_SLOT_BUSY)
SLOT_BUSY_STATUS = RDR_to_PC_SlotStatus(0, 9, ACTIVE, FAILED, SlotError.CMD_SLOT_BUSY)
BAD_LEVEL = RDR_to_PC_DataBlock(0, 9, ACTIVE, FAILED, SlotError.BAD_LEVELPARAMETER)
SEND_MORE = RDR_to_PC_DataBlock(0, 9, ACTIVE, bChainParameter=ChainParameter.NEXT_COMMAND)
STATUS_ANSWER = RDR_to_PC_SlotStatus(0, 9, ACTIVE)
POWERED_OFF = RDR_to_PC_SlotStatus(0, 9, INACTIVE)
ABORTED = RDR_to_PC_DataBlock(0, 2, ACTIVE, FAILED, SlotError.CMD_ABORTED)
ABORT_DONE = RDR_to_PC_SlotStatus(0, 7, ACTIVE)


@dataclass(frozen=True)
class Cell:
    state: Transaction
    event: TransactionEvent
    happening: Happening
    answers: list[Response]
    card_side: list[object]
    next_state: Transaction

    def __str__(self) -> str:
        return f"{self.state.name}-{self.event.name}"


def cells(
    state: Transaction,
    *rows: tuple[TransactionEvent, Happening, list[Response], list[object], Transaction],
) -> list[Cell]:
    return [Cell(state, *row) for row in rows]


def refused(state: Transaction) -> list[Cell]:
    """While the slot is busy every command but an abort half gets CMD_SLOT_BUSY, in the
    response type the command calls for, and nothing changes."""
    return cells(
        state,
        (E.XFR_BLOCK, WHOLE, [SLOT_BUSY_BLOCK], [], state),
        (E.XFR_BEGIN, BEGIN, [SLOT_BUSY_BLOCK], [], state),
        (E.XFR_CONTINUE, CONTINUE, [SLOT_BUSY_BLOCK], [], state),
        (E.XFR_END, END, [SLOT_BUSY_BLOCK], [], state),
        (E.XFR_NEXT_RESPONSE, NEXT, [SLOT_BUSY_BLOCK], [], state),
        (E.XFR_BAD_LEVEL, LEVEL_20, [SLOT_BUSY_BLOCK], [], state),
        (E.POWER, POWER_OFF, [SLOT_BUSY_STATUS], [], state),
        (E.OTHER_COMMAND, STATUS, [SLOT_BUSY_STATUS], [], state),
    )


CELLS = [
    # Idle: an APDU may begin, whole (0000) or chained (0001); nothing may continue (bError 8
    # names wLevelParameter). Either abort half alone is held until the other comes.
    *cells(
        IDLE,
        (E.XFR_BLOCK, WHOLE, [], [ToCard(SELECT)], CARD_BUSY),
        (E.XFR_BEGIN, BEGIN, [SEND_MORE], [], COMMAND_CHAIN),
        (E.XFR_CONTINUE, CONTINUE, [BAD_LEVEL], [], IDLE),
        (E.XFR_END, END, [BAD_LEVEL], [], IDLE),
        (E.XFR_NEXT_RESPONSE, NEXT, [BAD_LEVEL], [], IDLE),
        (E.XFR_BAD_LEVEL, LEVEL_20, [BAD_LEVEL], [], IDLE),
        (E.POWER, POWER_OFF, [POWERED_OFF], [POWERED_DOWN], IDLE),
        (E.OTHER_COMMAND, STATUS, [STATUS_ANSWER], [], IDLE),
        (E.ABORT_COMMAND, ABORT_9, [], [], ABORT_COMMANDED),
        (E.ABORT_REQUEST, REQUEST_9, [], [], ABORT_REQUESTED),
        (E.CARD_GONE, REMOVE, [], [], IDLE),
        (E.USB_RESET, USB_RESET, [], [POWERED_DOWN], IDLE),
    ),
    # Command chaining: 0003 asks for more, 0002 ends the APDU and sends it whole; a new
    # APDU (0000, 0001) starts over; power and other commands may come between blocks.
    *cells(
        COMMAND_CHAIN,
        (E.XFR_BLOCK, WHOLE, [], [ToCard(SELECT)], CARD_BUSY),
        (E.XFR_BEGIN, BEGIN, [SEND_MORE], [], COMMAND_CHAIN),
        (E.XFR_CONTINUE, CONTINUE, [SEND_MORE], [], COMMAND_CHAIN),
        (E.XFR_END, END, [], [ToCard(FIRST + b"\x00")], CARD_BUSY),
        (E.XFR_NEXT_RESPONSE, NEXT, [BAD_LEVEL], [], IDLE),
        (E.XFR_BAD_LEVEL, LEVEL_20, [BAD_LEVEL], [], IDLE),
        (E.POWER, POWER_OFF, [POWERED_OFF], [POWERED_DOWN], IDLE),
        (E.OTHER_COMMAND, STATUS, [STATUS_ANSWER], [], COMMAND_CHAIN),
        (E.ABORT_COMMAND, ABORT_9, [], [], ABORT_COMMANDED),
        (E.ABORT_REQUEST, REQUEST_9, [], [], ABORT_REQUESTED),
        (E.CARD_GONE, REMOVE, [], [], IDLE),
        (E.USB_RESET, USB_RESET, [], [POWERED_DOWN], IDLE),
    ),
    # Card busy: only the card, the card's leaving, USB reset or an abort half move it; the
    # XfrBlock (bSeq 2) is answered in every case but a USB reset, which leaves no one to read.
    *refused(CARD_BUSY),
    *cells(
        CARD_BUSY,
        (E.ABORT_COMMAND, ABORT_9, [ABORTED], [CANCELLED], ABORT_COMMANDED),
        (E.ABORT_REQUEST, REQUEST_9, [ABORTED], [CANCELLED], ABORT_REQUESTED),
        (E.CARD_ANSWERED, ANSWER, [RDR_to_PC_DataBlock(0, 2, ACTIVE, abData=OK)], [], IDLE),
        (
            E.CARD_ANSWERED,
            ANSWER_LONG,
            [RDR_to_PC_DataBlock(0, 2, ACTIVE, bChainParameter=1, abData=LONG[:BLOCK])],
            [],
            RESPONSE_CHAIN,
        ),
        (
            E.CARD_FAILED,
            NO_ANSWER,
            [RDR_to_PC_DataBlock(0, 2, ACTIVE, FAILED, SlotError.ICC_MUTE)],
            [],
            IDLE,
        ),
        (
            E.CARD_GONE,
            REMOVE,
            [RDR_to_PC_DataBlock(0, 2, NO_ICC, FAILED, SlotError.ICC_MUTE)],
            [CANCELLED],
            IDLE,
        ),
        (E.USB_RESET, USB_RESET, [], [CANCELLED, POWERED_DOWN], IDLE),
    ),
    # Response chaining: 0010 with no data asks for the next block (bChainParameter 03, 02
    # for the last); a new APDU means the host wants no more of this response.
    *cells(
        RESPONSE_CHAIN,
        (E.XFR_BLOCK, WHOLE, [], [ToCard(SELECT)], CARD_BUSY),
        (E.XFR_BEGIN, BEGIN, [SEND_MORE], [], COMMAND_CHAIN),
        (E.XFR_CONTINUE, CONTINUE, [BAD_LEVEL], [], IDLE),
        (E.XFR_END, END, [BAD_LEVEL], [], IDLE),
        (
            E.XFR_NEXT_RESPONSE,
            NEXT,
            [RDR_to_PC_DataBlock(0, 9, ACTIVE, bChainParameter=3, abData=LONG[BLOCK : 2 * BLOCK])],
            [],
            RESPONSE_CHAIN,
        ),
        (E.XFR_BAD_LEVEL, LEVEL_20, [BAD_LEVEL], [], IDLE),
        (E.XFR_BAD_LEVEL, xfr(0x0010, b"\x00"), [BAD_LEVEL], [], IDLE),
        (E.POWER, POWER_OFF, [POWERED_OFF], [POWERED_DOWN], IDLE),
        (E.OTHER_COMMAND, STATUS, [STATUS_ANSWER], [], RESPONSE_CHAIN),
        (E.ABORT_COMMAND, ABORT_9, [], [], ABORT_COMMANDED),
        (E.ABORT_REQUEST, REQUEST_9, [], [], ABORT_REQUESTED),
        (E.CARD_GONE, REMOVE, [], [], IDLE),
        (E.USB_RESET, USB_RESET, [], [POWERED_DOWN], IDLE),
    ),
    # Abort, ABORT request (bSeq 7) in: §5.3.1 answers the PC_to_RDR_Abort with its bSeq;
    # one with another bSeq cannot complete this abort (bError 6 names bSeq); a newer
    # request replaces the held one. The card coming and going is no part of it.
    *refused(ABORT_REQUESTED),
    *cells(
        ABORT_REQUESTED,
        (
            E.ABORT_COMMAND,
            ABORT_9,
            [RDR_to_PC_SlotStatus(0, 9, ACTIVE, FAILED, SlotError.BAD_SEQ)],
            [],
            ABORT_REQUESTED,
        ),
        (E.PAIRED_ABORT_COMMAND, ABORT_7, [ABORT_DONE], [], IDLE),
        (E.ABORT_REQUEST, REQUEST_9, [], [], ABORT_REQUESTED),
        (E.CARD_GONE, REMOVE, [], [], ABORT_REQUESTED),
        (E.USB_RESET, USB_RESET, [], [POWERED_DOWN], IDLE),
    ),
    # Abort, PC_to_RDR_Abort (bSeq 7) in: it is answered when the ABORT request with its bSeq
    # comes; a request with another bSeq starts another abort, so the held command fails
    # BAD_SEQ; a second PC_to_RDR_Abort finds the slot busy with the first.
    *refused(ABORT_COMMANDED),
    *cells(
        ABORT_COMMANDED,
        (E.ABORT_COMMAND, ABORT_9, [SLOT_BUSY_STATUS], [], ABORT_COMMANDED),
        (
            E.ABORT_REQUEST,
            REQUEST_9,
            [RDR_to_PC_SlotStatus(0, 7, ACTIVE, FAILED, SlotError.BAD_SEQ)],
            [],
            ABORT_REQUESTED,
        ),
        (E.PAIRED_ABORT_REQUEST, REQUEST_7, [ABORT_DONE], [], IDLE),
        (E.CARD_GONE, REMOVE, [], [], ABORT_COMMANDED),
        (E.USB_RESET, USB_RESET, [], [POWERED_DOWN], IDLE),
    ),
]


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_each_state_answers_each_event_and_moves_on(cell: Cell) -> None:
    host = in_state(cell.state)
    cell.happening(host)
    assert host.answers() == cell.answers
    assert host.card_side() == cell.card_side
    reader = host.reader
    assert reader.transaction is cell.next_state
    assert reader.busy == (cell.next_state in BUSY_STATES)
    # Time extensions are for an APDU with the card, and for nothing else.
    assert (reader.get_timer() is not None) == (cell.next_state is CARD_BUSY)


def test_the_table_has_exactly_the_cells_tested() -> None:
    assert {(cell.state, cell.event) for cell in CELLS} == set(TRANSITIONS)


# -- what the table leaves to the data ------------------------------------------------------------


@pytest.mark.parametrize("state", list(Transaction), ids=lambda state: state.name)
def test_a_command_for_another_slot_fails_bad_slot_and_changes_nothing(
    state: Transaction,
) -> None:
    host = in_state(state)
    host.send(PC_to_RDR_Abort(1, 9))
    assert host.answers() == [RDR_to_PC_SlotStatus(1, 9, NO_ICC, FAILED, SlotError.BAD_SLOT)]
    host.send(PC_to_RDR_XfrBlock(1, 9, SELECT))
    assert host.answers() == [RDR_to_PC_DataBlock(1, 9, NO_ICC, FAILED, SlotError.BAD_SLOT)]
    assert host.card_side() == []
    assert host.reader.transaction is state
    with pytest.raises(CCIDRemoteProtocolError, match="bSlot"):
        host.reader.abort_request(1, 9)
    assert host.reader.transaction is state


@pytest.mark.parametrize("state", list(Transaction), ids=lambda state: state.name)
def test_an_abort_with_data_fails_bad_dwlength_and_changes_nothing(state: Transaction) -> None:
    host = in_state(state)
    host.send(PC_to_RDR_Abort(0, 7, b"\x00"))
    assert host.answers() == [RDR_to_PC_SlotStatus(0, 7, ACTIVE, FAILED, SlotError.BAD_DWLENGTH)]
    assert host.card_side() == []
    assert host.reader.transaction is state


@pytest.mark.parametrize("state", list(Transaction), ids=lambda state: state.name)
def test_an_answer_to_an_apdu_no_longer_with_the_card_is_dropped(state: Transaction) -> None:
    host = in_state(state)
    host.reader.apdu_response(1000, OK)
    host.reader.apdu_failed(1000)
    assert host.answers() == []
    assert host.reader.transaction is state


def test_the_last_response_block_leaves_the_reader_idle() -> None:
    host = in_state(RESPONSE_CHAIN)
    NEXT(host)
    NEXT(host)
    last = RDR_to_PC_DataBlock(0, 9, ACTIVE, bChainParameter=2, abData=LONG[2 * BLOCK :])
    assert host.answers()[-1] == last
    assert host.reader.transaction is IDLE


def test_a_new_chained_command_starts_over_and_drops_the_blocks_before() -> None:
    host = in_state(COMMAND_CHAIN)
    BEGIN(host)
    END(host)
    assert host.card_side() == [ToCard(b"\x80\xca\x00")]


def test_a_refused_power_command_keeps_the_chain_in_progress() -> None:
    host = in_state(COMMAND_CHAIN)
    host.send(PC_to_RDR_IccPowerOn(0, 9, 0, b"\x00"))  # wrong dwLength
    assert host.answers() == [RDR_to_PC_DataBlock(0, 9, ACTIVE, FAILED, SlotError.BAD_DWLENGTH)]
    assert host.reader.transaction is COMMAND_CHAIN
    END(host)
    assert host.card_side() == [ToCard(FIRST + b"\x00")]


@pytest.mark.parametrize("happening", [WHOLE, BEGIN, CONTINUE, END, NEXT, LEVEL_20])
def test_an_xfr_block_without_a_powered_card_fails_mute_whatever_its_level(
    happening: Happening,
) -> None:
    host = in_state(COMMAND_CHAIN)
    host.reader.insert_card(TEST_ATR)  # a new card: present, not powered; the chain is gone
    assert host.reader.transaction is IDLE
    happening(host)
    assert host.answers() == [RDR_to_PC_DataBlock(0, 9, INACTIVE, FAILED, SlotError.ICC_MUTE)]
    assert host.card_side() == []
    assert host.reader.transaction is IDLE


@pytest.mark.parametrize("state", [ABORT_REQUESTED, ABORT_COMMANDED], ids=lambda s: s.name)
def test_the_half_that_completes_an_abort_keeps_what_the_host_has_not_read(
    state: Transaction,
) -> None:
    host = in_state(state)
    host.send(PC_to_RDR_GetSlotStatus(0, 8))  # answered busy; the host does not read it
    if state is ABORT_REQUESTED:
        ABORT_7(host)
    else:
        REQUEST_7(host)
    assert host.answers() == [
        RDR_to_PC_SlotStatus(0, 8, ACTIVE, FAILED, SlotError.CMD_SLOT_BUSY),
        ABORT_DONE,
    ]


def test_an_abort_half_that_does_not_complete_drops_what_the_host_has_not_read() -> None:
    host = in_state(ABORT_REQUESTED)
    host.send(PC_to_RDR_GetSlotStatus(0, 8))
    REQUEST_9(host)
    ABORT_9(host)
    assert host.answers() == [RDR_to_PC_SlotStatus(0, 9, ACTIVE)]
