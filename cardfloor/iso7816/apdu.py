"""Command and response APDUs (ISO/IEC 7816-3 §12.1, 7816-4 §5): every length case, short and
extended, chained commands, and the status words with a fixed meaning.

The one parser of command APDUs: the card, the PIN guard, the allow lists and the trace masking
all read commands through :meth:`CommandAPDU.from_bytes` and :func:`instruction`.

A command's ``le`` is the number of bytes the host accepts, already decoded: a short Le byte of
``00`` means 256, an extended ``0000`` means 65536; ``None`` means the command has no Le field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import FunctionType
from typing import Final

from cardfloor.frozen import copy_by_constructor, slot_setters

#: The largest Nc and Ne a short APDU can carry.
SHORT_MAX: Final = 256
#: The largest Nc and Ne an extended APDU can carry.
EXTENDED_MAX: Final = 65536


class StatusWord(enum.IntEnum):
    """SW1 SW2 values with a fixed meaning (ISO/IEC 7816-4 §5.1.3, GSC-IS 2.1 §5.4)."""

    SUCCESS = 0x9000
    #: SW2 carries the number of bytes GET RESPONSE can fetch (00: 256 or more).
    BYTES_REMAINING = 0x6100
    #: SW2 = 0xCX: verification failed, X tries left.
    VERIFICATION_FAILED = 0x63C0
    EXECUTION_ERROR = 0x6500
    MEMORY_FAILURE = 0x6581
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    COMMAND_CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_NOT_ALLOWED = 0x6900
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTHENTICATION_METHOD_BLOCKED = 0x6983
    #: GSC-IS uses it for malformed command data ("invalid data"); ISO calls it "reference
    #: data not usable".
    DATA_INVALID = 0x6984
    CONDITIONS_OF_USE_NOT_SATISFIED = 0x6985
    WRONG_PARAMETERS = 0x6A00
    INCORRECT_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1_P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    #: SW2 carries the exact Le the host should resend with.
    WRONG_LE = 0x6C00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


# SW1 values a card may answer with (ISO/IEC 7816-3 §10.3.3): 9000, or 61-6F except 60.
_VALID_SW1: Final = frozenset(range(0x61, 0x70))
_SW1_BYTES_REMAINING: Final = StatusWord.BYTES_REMAINING >> 8


def is_valid_status(sw: int) -> bool:
    """Whether ``sw`` is a status word a card may send (9000, or SW1 in 61..6F)."""
    return sw == StatusWord.SUCCESS or (sw >> 8) in _VALID_SW1


def bytes_remaining(count: int) -> int:
    """``61xx``: ``count`` more bytes wait for GET RESPONSE (``6100`` for 256 or more)."""
    return StatusWord.BYTES_REMAINING | (count if count < SHORT_MAX else 0)


def more_remaining(sw: int) -> bool:
    """Whether ``sw`` is ``61xx``: the card holds more of its answer for GET RESPONSE."""
    return sw >> 8 == _SW1_BYTES_REMAINING


def wrong_le(exact: int) -> int:
    """``6Cxx``: resend with Le = ``exact`` (1..256)."""
    return StatusWord.WRONG_LE | (exact & 0xFF)


def verification_failed(tries_remaining: int) -> int:
    """``63Cx``: the PIN was wrong, ``tries_remaining`` (0..15) attempts are left."""
    return StatusWord.VERIFICATION_FAILED | min(tries_remaining, 15)


#: CLA bit 5 of the interindustry classes (ISO/IEC 7816-4 §5.4.1): more chunks of this command
#: follow.
CLA_CHAINING: Final = 0x10
_FIRST_INTERINDUSTRY_PLAIN: Final = 0x03  # keep the channel; drop chaining and secure messaging
_FURTHER_INTERINDUSTRY_PLAIN: Final = 0x4F
_FURTHER_INTERINDUSTRY: Final = 0x40
_PROPRIETARY: Final = 0x80


def is_chained(cla: int) -> bool:
    """Whether ``cla`` says more chunks of the command follow (interindustry classes only)."""
    return cla < _PROPRIETARY and bool(cla & CLA_CHAINING)


def logical_channel(cla: int) -> int:
    """The logical channel ``cla`` names (ISO/IEC 7816-4 §5.4.1): 0-3 in the first
    interindustry classes, 4-19 in the further ones; a proprietary class is read as the first
    interindustry one, as cards that use it do."""
    if _FURTHER_INTERINDUSTRY <= cla < _PROPRIETARY:
        return 4 + (cla & 0x0F)
    return cla & _FIRST_INTERINDUSTRY_PLAIN


def get_response_class(cla: int) -> int:
    """The CLA of a GET RESPONSE that follows a command of class ``cla``: interindustry, on
    the same logical channel, without chaining or secure messaging."""
    return plain_class(cla) if cla < _PROPRIETARY else cla & _FIRST_INTERINDUSTRY_PLAIN


def plain_class(cla: int) -> int:
    """``cla`` with the same class and channel, without chaining or secure messaging. A
    proprietary class is kept whole: its bits are the card's own."""
    if cla >= _PROPRIETARY:
        return cla
    if cla >= _FURTHER_INTERINDUSTRY:
        return cla & _FURTHER_INTERINDUSTRY_PLAIN
    return cla & _FIRST_INTERINDUSTRY_PLAIN


def instruction(raw: bytes) -> int | None:
    """The INS byte of ``raw`` read as a command header, whatever its lengths say; None when it
    is too short to have one."""
    return raw[1] if len(raw) >= 2 else None


class APDUFormatError(ValueError):
    """Bytes that are not a command APDU; ``field`` says which part, ``value`` what it held."""

    def __init__(self, reason: str, *, field: str, value: int) -> None:
        super().__init__(f"{reason}: {field}={value}")
        self.reason = reason
        self.field = field
        self.value = value


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must be a byte, got {value}")


@dataclass(frozen=True, slots=True)
class CommandAPDU:
    """A command APDU: header, command data and the expected response length.

    ``extended`` selects extended length fields when encoding; a command whose Nc or Ne does
    not fit a short APDU must be extended.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool = False

    def __post_init__(self) -> None:
        if not (0 <= self.cla <= 0xFF and 0 <= self.ins <= 0xFF and 0 <= self.p1 <= 0xFF):
            for name in ("cla", "ins", "p1"):
                _check_byte(name, getattr(self, name))
        _check_byte("p2", self.p2)
        limit = EXTENDED_MAX if self.extended else SHORT_MAX
        if len(self.data) >= limit:
            kind = "an extended" if self.extended else "a short"
            raise ValueError(f"data of {len(self.data)} bytes does not fit {kind} Lc")
        if self.le is not None and not 1 <= self.le <= limit:
            raise ValueError(f"le must be 1..{limit} or None, got {self.le}")

    @property
    def case(self) -> int:
        """ISO/IEC 7816-3 case: 1 (nothing), 2 (Le), 3 (data), 4 (data and Le)."""
        return (3 if self.data else 1) + (1 if self.le is not None else 0)

    @property
    def chained(self) -> bool:
        """More chunks of this command follow (CLA bit ``10`` of an interindustry class)."""
        return is_chained(self.cla)

    @property
    def ne(self) -> int:
        """Bytes the host accepts in the response: Le, or 0 without an Le field."""
        return 0 if self.le is None else self.le

    def to_bytes(self) -> bytes:
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        nc = len(self.data)
        if not self.extended:
            lc = bytes((nc,)) + self.data if nc else b""
            le = b"" if self.le is None else bytes((self.le & 0xFF,))
            return header + lc + le
        lc = b"\x00" + nc.to_bytes(2, "big") + self.data if nc else b""
        if self.le is None:
            return header + lc
        le = (self.le & 0xFFFF).to_bytes(2, "big")
        return header + (lc + le if nc else b"\x00" + le)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandAPDU:
        """Parse one command APDU; raise :class:`APDUFormatError` when the lengths disagree."""
        size = len(raw)
        if size < 4:
            raise APDUFormatError("a command APDU has a 4-byte header", field="length", value=size)
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if size == 4:
            return _command(cla, ins, p1, p2, b"", None, False)
        p3 = raw[4]
        if size == 5:
            return _command(cla, ins, p1, p2, b"", p3 or SHORT_MAX, False)
        if p3:
            body = raw[5 : 5 + p3]
            if size == 5 + p3:
                return _command(cla, ins, p1, p2, body, None, False)
            if size == 6 + p3:
                return _command(cla, ins, p1, p2, body, raw[-1] or SHORT_MAX, False)
            raise APDUFormatError("short Lc disagrees with the APDU length", field="Lc", value=p3)
        # P3 = 00 with more bytes after it: extended length fields.
        if size < 7:
            raise APDUFormatError("truncated extended length", field="length", value=size)
        word = int.from_bytes(raw[5:7], "big")
        if size == 7:
            return _command(cla, ins, p1, p2, b"", word or EXTENDED_MAX, True)
        if word == 0:
            raise APDUFormatError("extended Lc of 0 followed by data", field="Lc", value=0)
        body = raw[7 : 7 + word]
        if size == 7 + word:
            return _command(cla, ins, p1, p2, body, None, True)
        if size == 9 + word:
            le = int.from_bytes(raw[-2:], "big") or EXTENDED_MAX
            return _command(cla, ins, p1, p2, body, le, True)
        raise APDUFormatError("extended Lc disagrees with the APDU length", field="Lc", value=word)


def _is_compiled() -> bool:
    """Whether mypyc compiled this module (docs/compiled.md): its functions are then built-in
    functions, not Python ones."""
    return not isinstance(_is_compiled, FunctionType)


# from_bytes and success() build their values field by field, skipping the checks the wire
# format already guarantees: the generated __init__ and __post_init__ were most of a short
# command's parsing time. In Python through the slot setters (cardfloor.frozen); compiled, the
# class is native, and a store to its field is a plain store (the frozen __setattr__ guards
# Python callers, and object.__new__ refuses a native class, hence the class's own __new__).
_COMPILED: Final = _is_compiled()
_new_command: Final = CommandAPDU.__new__
_SET_FIELDS: Final = slot_setters(CommandAPDU, ("cla", "ins", "p1", "p2", "data", "le", "extended"))


def _command(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None, extended: bool
) -> CommandAPDU:
    command = _new_command(CommandAPDU)
    if _COMPILED:
        command.cla = cla  # type: ignore[misc]
        command.ins = ins  # type: ignore[misc]
        command.p1 = p1  # type: ignore[misc]
        command.p2 = p2  # type: ignore[misc]
        command.data = data  # type: ignore[misc]
        command.le = le  # type: ignore[misc]
        command.extended = extended  # type: ignore[misc]
        return command
    set_cla, set_ins, set_p1, set_p2, set_data, set_le, set_extended = _SET_FIELDS
    set_cla(command, cla)
    set_ins(command, ins)
    set_p1(command, p1)
    set_p2(command, p2)
    set_data(command, data)
    set_le(command, le)
    set_extended(command, extended)
    return command


@dataclass(frozen=True, slots=True)
class Response:
    """A response APDU: data followed by SW1 SW2."""

    sw: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.sw <= 0xFFFF:
            raise ValueError(f"sw must fit in two bytes, got {self.sw}")

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Response:
        if len(raw) < 2:
            raise APDUFormatError("a response ends with SW1 SW2", field="length", value=len(raw))
        return cls(int.from_bytes(raw[-2:], "big"), raw[:-2])


# Responses are immutable, so the common bare status words are built once.
_STATUS_RESPONSES: Final[dict[int, Response]] = {sw: Response(sw) for sw in StatusWord}
_new_response: Final = Response.__new__
_SUCCESS: Final = 0x9000
_SET_SW, _SET_DATA = slot_setters(Response, ("sw", "data"))


def status(sw: int) -> Response:
    """A response with no data."""
    response = _STATUS_RESPONSES.get(sw)
    return Response(sw) if response is None else response


def success(data: bytes = b"") -> Response:
    """``data`` followed by 9000."""
    response = _new_response(Response)
    if _COMPILED:  # as _command
        response.sw = _SUCCESS  # type: ignore[misc]
        response.data = data  # type: ignore[misc]
        return response
    _SET_SW(response, _SUCCESS)  # a plain int: to_bytes() on an enum member is slower
    _SET_DATA(response, data)
    return response


# Both builds copy and pickle these values alike (see copy_by_constructor).
copy_by_constructor(CommandAPDU, Response)
