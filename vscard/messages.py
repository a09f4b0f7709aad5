"""The nine VSCard messages, and our four extensions, as immutable values, one class per type.

Every message carries the ``reader_id`` of its header. Values are checked when a message
is built, so a message that exists can always be encoded. A field that holds an enum member
when the value is one is typed ``Enum | int``, not ``int``: the compiled build (docs/compiled.md)
stores an ``int`` field as a machine integer, which would drop the member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, get_args

from cardfloor.frozen import copy_by_constructor
from cardfloor.iso7816.apdu import more_remaining

from .constants import (
    U32_MAX,
    VSCARD_UNDEFINED_READER_ID,
    VSCARD_VERSION,
    ErrorCode,
    MessageType,
    TransmissionProtocol,
)


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= U32_MAX:
        raise ValueError(f"{name} must fit in a u32, got {value}")


@dataclass(frozen=True, slots=True)
class Init:
    """VSC_Init: opens the conversation in both directions.

    The magic ``VSCD`` is implied; ``capabilities`` holds the u32 words after the version
    (QEMU and libcacard send one word of 0; ours carries :class:`~vscard.Capability` bits).
    """

    TYPE: ClassVar[MessageType] = MessageType.INIT

    reader_id: int = VSCARD_UNDEFINED_READER_ID
    version: int = VSCARD_VERSION
    capabilities: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        _check_u32("version", self.version)
        if not self.capabilities:
            raise ValueError("Init needs at least one capabilities word")
        for word in self.capabilities:
            _check_u32("capabilities word", word)


@dataclass(frozen=True, slots=True)
class Error:
    """VSC_Error: the host's reply to a request, or the card side's answer to a failed APDU.

    ``code`` is an :class:`ErrorCode` when the value is one. libcacard's vscclient sends its
    APDU failures in host byte order (``0x01000000`` on x86), so any u32 is kept as is.
    """

    TYPE: ClassVar[MessageType] = MessageType.ERROR

    reader_id: int
    code: ErrorCode | int = ErrorCode.SUCCESS

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        _check_u32("code", self.code)


@dataclass(frozen=True, slots=True)
class ReaderAdd:
    """VSC_ReaderAdd: the card side has a new reader; the host answers with its id."""

    TYPE: ClassVar[MessageType] = MessageType.READER_ADD

    reader_id: int = VSCARD_UNDEFINED_READER_ID
    name: str = ""

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class ReaderRemove:
    """VSC_ReaderRemove: the reader is gone (and with it any card)."""

    TYPE: ClassVar[MessageType] = MessageType.READER_REMOVE

    reader_id: int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class ATR:
    """VSC_ATR: a card was inserted or reset; ``atr`` is its Answer To Reset."""

    TYPE: ClassVar[MessageType] = MessageType.ATR

    reader_id: int
    atr: bytes

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class CardRemove:
    """VSC_CardRemove: the card left the reader."""

    TYPE: ClassVar[MessageType] = MessageType.CARD_REMOVE

    reader_id: int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class APDU:
    """VSC_APDU: a command APDU (host to card side) or its response with SW1 SW2 (back)."""

    TYPE: ClassVar[MessageType] = MessageType.APDU

    reader_id: int
    data: bytes

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class Flush:
    """VSC_Flush: the host asks the card side to finish what it has and say FlushComplete."""

    TYPE: ClassVar[MessageType] = MessageType.FLUSH

    reader_id: int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


@dataclass(frozen=True, slots=True)
class FlushComplete:
    """VSC_FlushComplete: the answer to Flush."""

    TYPE: ClassVar[MessageType] = MessageType.FLUSH_COMPLETE

    reader_id: int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)


def _check_protocol(name: str, value: int) -> None:
    if value not in TransmissionProtocol.__members__.values():
        raise ValueError(f"{name} must be 0 (T=0) or 1 (T=1), got {value}")


@dataclass(frozen=True, slots=True)
class CardReset:
    """Our extension, host to client, sent only when both Inits announced
    :attr:`~vscard.Capability.CARD_RESET`: the host's reader powered the card off and on (or
    reset it). The card must lose its volatile state (verified PINs, selections) before the
    client handles its next message for the reader; ``protocol`` is the one the reader runs
    with the card afterwards."""

    TYPE: ClassVar[MessageType] = MessageType.CARD_RESET

    reader_id: int
    protocol: TransmissionProtocol | int = TransmissionProtocol.T0

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        _check_protocol("CardReset.protocol", self.protocol)


@dataclass(frozen=True, slots=True)
class CardProtocol:
    """Our extension, as :class:`CardReset`: the host's reader now runs ``protocol`` with the
    card (a CCID SetParameters), with no reset."""

    TYPE: ClassVar[MessageType] = MessageType.CARD_PROTOCOL

    reader_id: int
    protocol: TransmissionProtocol | int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        _check_protocol("CardProtocol.protocol", self.protocol)


@dataclass(frozen=True, slots=True)
class ResponseChain:
    """Our extension, client to host, sent only when both Inits announced
    :attr:`~vscard.Capability.RESPONSE_CHAIN`, just before the APDU response it belongs to:
    the data the card gave to GET RESPONSEs after answering ``61xx``, and the status word of
    the last one. On the wire: ``data`` then ``sw`` (2 bytes, big-endian)."""

    TYPE: ClassVar[MessageType] = MessageType.RESPONSE_CHAIN

    reader_id: int
    data: bytes
    sw: int

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        if not 0 <= self.sw <= 0xFFFF:
            raise ValueError(f"ResponseChain.sw must fit in 2 bytes, got {self.sw}")


#: What a command or a response of a ReadAhead may take: its 2-byte length field.
_MAX_PART = 0xFFFF


@dataclass(frozen=True, slots=True)
class ReadAhead:
    """Our extension, client to host, sent only when both Inits announced
    :attr:`~vscard.Capability.READ_AHEAD`, just before the APDU response it follows: the card's
    ``response`` to ``command``, which the client sent it after the guest's command because the
    guest is likely to send it next (see :mod:`vscard.read_ahead`). When ``response`` is
    ``61xx``, ``chain`` and ``chain_sw`` are what the card gave to the GET RESPONSEs after it,
    complete: ``chain_sw`` is the last status word, never ``61xx`` (a ``61xx`` response always has
    them).

    On the wire: the command's length (u16, big-endian) and the command, the response's length
    (u16) and the response, then, for a ``61xx`` response, the chain and ``chain_sw`` (2 bytes,
    big-endian).
    """

    TYPE: ClassVar[MessageType] = MessageType.READ_AHEAD

    reader_id: int
    command: bytes
    response: bytes
    chain: bytes = b""
    chain_sw: int | None = None

    def __post_init__(self) -> None:
        _check_u32("reader_id", self.reader_id)
        if not 4 <= len(self.command) <= _MAX_PART:
            raise ValueError(
                f"ReadAhead.command must be 4..{_MAX_PART} bytes, got {len(self.command)}"
            )
        if not 2 <= len(self.response) <= _MAX_PART:
            raise ValueError(
                f"ReadAhead.response must be 2..{_MAX_PART} bytes, got {len(self.response)}"
            )
        remaining = more_remaining(int.from_bytes(self.response[-2:], "big"))
        if self.chain_sw is None:
            if remaining or self.chain:
                raise ValueError(
                    "ReadAhead.chain_sw must end the chain of a 61xx response, got None"
                )
            return
        if not remaining:
            raise ValueError(
                f"ReadAhead.chain_sw is for a 61xx response, got {self.response[-2:].hex()}"
            )
        if not 0 <= self.chain_sw <= 0xFFFF or more_remaining(self.chain_sw):
            raise ValueError(
                f"ReadAhead.chain_sw must be a 2-byte final status word, got {self.chain_sw:#x}"
            )

    @property
    def size(self) -> int:
        """Payload bytes on the wire: what read-ahead bounds count."""
        tail = 0 if self.chain_sw is None else len(self.chain) + 2
        return 4 + len(self.command) + len(self.response) + tail


Message = (
    Init
    | Error
    | ReaderAdd
    | ReaderRemove
    | ATR
    | CardRemove
    | APDU
    | Flush
    | FlushComplete
    | CardReset
    | CardProtocol
    | ResponseChain
    | ReadAhead
)
"""Any VSCard message."""

# Both builds copy and pickle these values alike (see copy_by_constructor).
copy_by_constructor(*get_args(Message))
