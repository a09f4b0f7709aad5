"""The reader's transaction: what the host may send next, and what answers what it may not.

CCID rev 1.1 gives a slot one command at a time (a second bulk-OUT command while one is in
progress fails CMD_SLOT_BUSY), chaining of long APDUs and responses at extended APDU level
(§6.1.4 wLevelParameter, §6.2.1 bChainParameter), and the two-halved abort procedure of
§5.3.1 (the ABORT class request on ep0 and a PC_to_RDR_Abort with the same bSeq, in either
order; the PC_to_RDR_Abort is answered once both are in). :data:`TRANSITIONS` is that
as a table: every (state, event) that can happen, the answer, and the state it leads to.

States (``ABORT_*`` are the abort procedure with one half in, waiting for the other):

- ``IDLE``: nothing under way.
- ``COMMAND_CHAIN``: blocks of a chained command APDU came (0001, then 0003s); more follow.
- ``CARD_BUSY``: an APDU is with the card; time extensions go out.
- ``RESPONSE_CHAIN``: the card's response is longer than one message; the host asks for
  each further block with an empty XfrBlock 0010.
- ``ABORT_REQUESTED``: the ABORT class request is in; its PC_to_RDR_Abort is awaited.
- ``ABORT_COMMANDED``: PC_to_RDR_Abort is in; the ABORT class request is awaited.

What the table leaves to the data, in every state:

- A command for a slot other than 0 fails BAD_SLOT; a PC_to_RDR_Abort with data fails
  BAD_DWLENGTH. Neither changes the state.
- An XfrBlock the table does not answer CMD_SLOT_BUSY fails ICC_MUTE when no card is
  powered, and XFR_OVERRUN when it would make an APDU longer than 65,544 bytes; so does a
  response longer than that. Either way the reader is then idle.
- Response chaining lasts while blocks remain: after the last one the reader is idle (at
  once when the response fits one message).
- IccPowerOn and IccPowerOff move the state only when accepted; a refused one (wrong
  dwLength, bPowerSelect) changes nothing, as any other refused command.
- An answer from the card to any APDU but the one with it (a late one) is dropped.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NamedTuple


class Transaction(enum.Enum):
    """Where the reader's one transaction stands (see the module's table)."""

    IDLE = "idle"
    COMMAND_CHAIN = "command chaining"
    CARD_BUSY = "card busy"
    RESPONSE_CHAIN = "response chaining"
    ABORT_REQUESTED = "aborting, ABORT request in"
    ABORT_COMMANDED = "aborting, PC_to_RDR_Abort in"

    # Identity hash, a C slot: Enum's own hashes the name in Python, and the table is looked
    # up twice per APDU. Members are singletons compared by identity, so the two agree.
    __hash__ = object.__hash__


class TransactionEvent(enum.Enum):
    """What moves a transaction: bulk-OUT commands for slot 0, ep0, the card, USB."""

    XFR_BLOCK = "XfrBlock 0000: a whole APDU"
    XFR_BEGIN = "XfrBlock 0001: the first block of an APDU"
    XFR_CONTINUE = "XfrBlock 0003: a further block, more follow"
    XFR_END = "XfrBlock 0002: the last block"
    XFR_NEXT_RESPONSE = "XfrBlock 0010, no data: the next response block"
    XFR_BAD_LEVEL = "XfrBlock, any other wLevelParameter (or 0010 with data)"
    POWER = "IccPowerOn or IccPowerOff"
    OTHER_COMMAND = "any other command"
    ABORT_COMMAND = "PC_to_RDR_Abort"
    PAIRED_ABORT_COMMAND = "PC_to_RDR_Abort with the bSeq of the ABORT request in"
    ABORT_REQUEST = "ABORT class request"
    PAIRED_ABORT_REQUEST = "ABORT class request with the bSeq of the PC_to_RDR_Abort in"
    CARD_ANSWERED = "the card answers the APDU"
    CARD_FAILED = "the card gives the APDU no answer"
    CARD_GONE = "the card is removed or replaced"
    USB_RESET = "USB reset or SET_CONFIGURATION"

    __hash__ = object.__hash__


class Answer(enum.Enum):
    """What the host (and the card side) get for an event."""

    NOTHING = "nothing"
    OWN = "the command's own answer"
    SLOT_BUSY = "failed, CMD_SLOT_BUSY, in the command's response type"
    BAD_LEVEL = "DataBlock failed, BAD_LEVELPARAMETER"
    NEXT_COMMAND = "DataBlock, bChainParameter 10: send the next block"
    TO_CARD = "none yet: the whole APDU goes to the card"
    FIRST_BLOCK = "DataBlock: the response, or its first block (bChainParameter 00 or 01)"
    NEXT_BLOCK = "DataBlock: the response's next block (bChainParameter 03 or 02)"
    MUTE = "DataBlock failed, ICC_MUTE"
    GONE = "APDU cancelled; DataBlock failed, ICC_MUTE, no ICC"
    ABORTED = "APDU cancelled; its DataBlock failed, CMD_ABORTED; this half is held"
    HELD = "none yet: this half is held"
    HELD_BAD_SEQ = "the held PC_to_RDR_Abort fails BAD_SEQ; this request is held"
    BAD_SEQ = "SlotStatus failed, BAD_SEQ"
    ABORT_DONE = "SlotStatus: the abort is done"
    CANCELLED = "APDU cancelled (the host's pipes are reset)"

    __hash__ = object.__hash__


class Step(NamedTuple):
    """One cell of :data:`TRANSITIONS`."""

    answer: Answer
    next_state: Transaction


_IDLE = Transaction.IDLE
_CMD = Transaction.COMMAND_CHAIN
_CARD = Transaction.CARD_BUSY
_RSP = Transaction.RESPONSE_CHAIN
_AB_REQ = Transaction.ABORT_REQUESTED
_AB_CMD = Transaction.ABORT_COMMANDED
_E = TransactionEvent
_A = Answer

TRANSITIONS: Final[Mapping[tuple[Transaction, TransactionEvent], Step]] = MappingProxyType(
    {
        # idle: an APDU may begin; nothing may continue
        (_IDLE, _E.XFR_BLOCK): Step(_A.TO_CARD, _CARD),
        (_IDLE, _E.XFR_BEGIN): Step(_A.NEXT_COMMAND, _CMD),
        (_IDLE, _E.XFR_CONTINUE): Step(_A.BAD_LEVEL, _IDLE),
        (_IDLE, _E.XFR_END): Step(_A.BAD_LEVEL, _IDLE),
        (_IDLE, _E.XFR_NEXT_RESPONSE): Step(_A.BAD_LEVEL, _IDLE),
        (_IDLE, _E.XFR_BAD_LEVEL): Step(_A.BAD_LEVEL, _IDLE),
        (_IDLE, _E.POWER): Step(_A.OWN, _IDLE),
        (_IDLE, _E.OTHER_COMMAND): Step(_A.OWN, _IDLE),
        (_IDLE, _E.ABORT_COMMAND): Step(_A.HELD, _AB_CMD),
        (_IDLE, _E.ABORT_REQUEST): Step(_A.HELD, _AB_REQ),
        (_IDLE, _E.CARD_GONE): Step(_A.NOTHING, _IDLE),
        (_IDLE, _E.USB_RESET): Step(_A.NOTHING, _IDLE),
        # command chaining: 0003 and 0002 continue; 0000 and 0001 start over
        (_CMD, _E.XFR_BLOCK): Step(_A.TO_CARD, _CARD),
        (_CMD, _E.XFR_BEGIN): Step(_A.NEXT_COMMAND, _CMD),
        (_CMD, _E.XFR_CONTINUE): Step(_A.NEXT_COMMAND, _CMD),
        (_CMD, _E.XFR_END): Step(_A.TO_CARD, _CARD),
        (_CMD, _E.XFR_NEXT_RESPONSE): Step(_A.BAD_LEVEL, _IDLE),
        (_CMD, _E.XFR_BAD_LEVEL): Step(_A.BAD_LEVEL, _IDLE),
        (_CMD, _E.POWER): Step(_A.OWN, _IDLE),
        (_CMD, _E.OTHER_COMMAND): Step(_A.OWN, _CMD),
        (_CMD, _E.ABORT_COMMAND): Step(_A.HELD, _AB_CMD),
        (_CMD, _E.ABORT_REQUEST): Step(_A.HELD, _AB_REQ),
        (_CMD, _E.CARD_GONE): Step(_A.NOTHING, _IDLE),
        (_CMD, _E.USB_RESET): Step(_A.NOTHING, _IDLE),
        # card busy: every command but an abort half is refused
        (_CARD, _E.XFR_BLOCK): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.XFR_BEGIN): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.XFR_CONTINUE): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.XFR_END): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.XFR_NEXT_RESPONSE): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.XFR_BAD_LEVEL): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.POWER): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.OTHER_COMMAND): Step(_A.SLOT_BUSY, _CARD),
        (_CARD, _E.ABORT_COMMAND): Step(_A.ABORTED, _AB_CMD),
        (_CARD, _E.ABORT_REQUEST): Step(_A.ABORTED, _AB_REQ),
        (_CARD, _E.CARD_ANSWERED): Step(_A.FIRST_BLOCK, _RSP),
        (_CARD, _E.CARD_FAILED): Step(_A.MUTE, _IDLE),
        (_CARD, _E.CARD_GONE): Step(_A.GONE, _IDLE),
        (_CARD, _E.USB_RESET): Step(_A.CANCELLED, _IDLE),
        # response chaining: 0010 continues; a new APDU drops the rest of the response
        (_RSP, _E.XFR_BLOCK): Step(_A.TO_CARD, _CARD),
        (_RSP, _E.XFR_BEGIN): Step(_A.NEXT_COMMAND, _CMD),
        (_RSP, _E.XFR_CONTINUE): Step(_A.BAD_LEVEL, _IDLE),
        (_RSP, _E.XFR_END): Step(_A.BAD_LEVEL, _IDLE),
        (_RSP, _E.XFR_NEXT_RESPONSE): Step(_A.NEXT_BLOCK, _RSP),
        (_RSP, _E.XFR_BAD_LEVEL): Step(_A.BAD_LEVEL, _IDLE),
        (_RSP, _E.POWER): Step(_A.OWN, _IDLE),
        (_RSP, _E.OTHER_COMMAND): Step(_A.OWN, _RSP),
        (_RSP, _E.ABORT_COMMAND): Step(_A.HELD, _AB_CMD),
        (_RSP, _E.ABORT_REQUEST): Step(_A.HELD, _AB_REQ),
        (_RSP, _E.CARD_GONE): Step(_A.NOTHING, _IDLE),
        (_RSP, _E.USB_RESET): Step(_A.NOTHING, _IDLE),
        # aborting, ABORT request in: a newer request replaces it; the card does not matter
        (_AB_REQ, _E.XFR_BLOCK): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.XFR_BEGIN): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.XFR_CONTINUE): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.XFR_END): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.XFR_NEXT_RESPONSE): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.XFR_BAD_LEVEL): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.POWER): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.OTHER_COMMAND): Step(_A.SLOT_BUSY, _AB_REQ),
        (_AB_REQ, _E.ABORT_COMMAND): Step(_A.BAD_SEQ, _AB_REQ),
        (_AB_REQ, _E.PAIRED_ABORT_COMMAND): Step(_A.ABORT_DONE, _IDLE),
        (_AB_REQ, _E.ABORT_REQUEST): Step(_A.HELD, _AB_REQ),
        (_AB_REQ, _E.CARD_GONE): Step(_A.NOTHING, _AB_REQ),
        (_AB_REQ, _E.USB_RESET): Step(_A.NOTHING, _IDLE),
        # aborting, PC_to_RDR_Abort in: only the ABORT request can move it
        (_AB_CMD, _E.XFR_BLOCK): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.XFR_BEGIN): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.XFR_CONTINUE): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.XFR_END): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.XFR_NEXT_RESPONSE): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.XFR_BAD_LEVEL): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.POWER): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.OTHER_COMMAND): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.ABORT_COMMAND): Step(_A.SLOT_BUSY, _AB_CMD),
        (_AB_CMD, _E.ABORT_REQUEST): Step(_A.HELD_BAD_SEQ, _AB_REQ),
        (_AB_CMD, _E.PAIRED_ABORT_REQUEST): Step(_A.ABORT_DONE, _IDLE),
        (_AB_CMD, _E.CARD_GONE): Step(_A.NOTHING, _AB_CMD),
        (_AB_CMD, _E.USB_RESET): Step(_A.NOTHING, _IDLE),
    }
)
"""Every (state, event) that can happen, its answer and the state it leads to.

Pairs not here cannot happen: a paired abort half needs the other half held, and only an
APDU with the card can be answered (an answer to any other is late, and dropped).
"""

BUSY: Final = frozenset(
    state
    for state in Transaction
    if TRANSITIONS[state, TransactionEvent.OTHER_COMMAND].answer is Answer.SLOT_BUSY
)
"""The states in which a command gets CMD_SLOT_BUSY: the card works, or an abort is under way."""
