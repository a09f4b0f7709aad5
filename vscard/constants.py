"""Wire constants of QEMU's VSCard passthrough protocol (``vscard_common.h``, version 0.0.2)."""

from __future__ import annotations

import enum
from typing import Final

#: Bytes of every message header: type, reader_id and length, each a big-endian u32.
HEADER_SIZE: Final = 12

#: The Init magic as it appears on the wire. It is never byte-swapped.
VSCARD_MAGIC: Final = b"VSCD"

#: ``MAKE_VERSION(0, 0, 2)``: major << 21 | middle << 10 | minor.
VSCARD_VERSION: Final = 2

#: Reader id of messages that concern no reader (Init, a ReaderAdd before an id is assigned).
VSCARD_UNDEFINED_READER_ID: Final = 0xFFFFFFFF

#: The first reader id a host assigns.
VSCARD_MINIMAL_READER_ID: Final = 0

#: QEMU's receive buffer (``VSCARD_IN_SIZE``): the largest frame it accepts, header included.
#: A bigger frame wedges QEMU's chardev forever, so it is also our default limit both ways.
MAX_FRAME_SIZE: Final = 65536

#: QEMU rejects a VSC_ATR longer than this.
MAX_ATR_SIZE: Final = 40

U32_MAX: Final = 0xFFFFFFFF


class MessageType(enum.IntEnum):
    """``VSCMsgType``: the first header field."""

    INIT = 1
    ERROR = 2
    READER_ADD = 3
    READER_REMOVE = 4
    ATR = 5
    CARD_REMOVE = 6
    APDU = 7
    FLUSH = 8
    FLUSH_COMPLETE = 9
    #: Our extension (host to client, only when both Inits announce
    #: :attr:`Capability.CARD_RESET`). The high bit keeps it far from QEMU's numbers, which
    #: count up from 1: a future upstream type cannot collide with it.
    CARD_RESET = 0x8000_0001
    #: Our extension, as :attr:`CARD_RESET`: the reader now runs another protocol.
    CARD_PROTOCOL = 0x8000_0002
    #: Our extension (client to host, only when both Inits announce
    #: :attr:`Capability.RESPONSE_CHAIN`): the rest of a ``61xx`` answer, read ahead.
    RESPONSE_CHAIN = 0x8000_0003
    #: Our extension (client to host, only when both Inits announce
    #: :attr:`Capability.READ_AHEAD`): the card's answer to a command the guest will likely
    #: send next, read ahead.
    READ_AHEAD = 0x8000_0004


class Capability(enum.IntFlag):
    """Bits of the first Init capabilities word.

    QEMU and libcacard send 0 and ignore the words they receive (QEMU's
    ``hw/usb/ccid-card-passthru.c``, ``ccid_card_vscard_handle_init``: "none exist atm";
    libcacard's ``src/vscclient.c``, ``on_host_init``: "Future: check capabilities"). Our bits
    sit at the top of the word, away from any bit upstream may define from the bottom up.
    """

    #: The side understands CardReset and CardProtocol. A host sends them only when both
    #: sides announced it; a client that announces it finishes a reset before it handles the
    #: next message for that reader (so no acknowledgement is needed).
    CARD_RESET = 0x8000_0000
    #: The side understands ResponseChain. The client sends one, before the response it
    #: belongs to, only when both sides announced it; the host then answers the GET RESPONSEs
    #: that follow from it (see :mod:`vscard.response_chain`), so it may announce it only when
    #: its application does.
    RESPONSE_CHAIN = 0x4000_0000
    #: The side understands ReadAhead. The client sends them, before the response they follow,
    #: only when both sides announced it; the host then answers a later command from them when
    #: it matches one byte for byte (see :mod:`vscard.read_ahead`), so it may announce it only
    #: when its application does.
    READ_AHEAD = 0x2000_0000


class TransmissionProtocol(enum.IntEnum):
    """The payload of CardReset and CardProtocol: the protocol the host's reader runs."""

    T0 = 0
    T1 = 1


class ErrorCode(enum.IntEnum):
    """``VSCErrorCode``: the payload of a VSC_Error the host sends as a reply."""

    SUCCESS = 0
    GENERAL_ERROR = 1
    CANNOT_ADD_MORE_READERS = 2
    #: Spelled ``VSC_CARD_ALREAY_INSERTED`` upstream.
    CARD_ALREADY_INSERTED = 3
