"""Sans-IO CCID codec: :func:`encode` any message; :class:`CommandDecoder` reassembles bulk-OUT.

Bulk-OUT messages are framed by dwLength only, never by USB packet or transfer size: a host
may split one message over several OUT transfers (usbip-win2 rewrites the packet size), so
the decoder is a byte stream. The reader's answers are decoded whole with
:func:`decode_response` and :func:`decode_interrupt` (for tests and USB/IP clients).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final

from cardfloor.frozen import slot_setters

from .constants import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    HEADER_SIZE,
    MIN_MAX_MESSAGE_LENGTH,
    CommandStatus,
    ICCStatus,
    MessageType,
)
from .errors import CCIDRemoteProtocolError
from .messages import (
    Command,
    InterruptMessage,
    Message,
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
    RDR_to_PC_HardwareError,
    RDR_to_PC_NotifySlotChange,
    RDR_to_PC_Parameters,
    RDR_to_PC_SlotStatus,
    Response,
    UnknownCommand,
)

# bMessageType, dwLength, bSlot, bSeq and the three message-specific bytes.
_HEADER: Final = struct.Struct("<BIBBBBB")
_TWO_WORDS: Final = struct.Struct("<II")
_HARDWARE_ERROR: Final = struct.Struct("<BBBB")
_pack_header: Final = _HEADER.pack
_unpack_header: Final = _HEADER.unpack_from
_XFR_BLOCK: Final = int(MessageType.PC_to_RDR_XfrBlock)
_DATA_BLOCK: Final = int(MessageType.RDR_to_PC_DataBlock)

# bStatus bits 2-5 are RFU; bmICCStatus 3 and bmCommandStatus 3 are RFU too.
_ICC_STATUS: Final = {status.value: status for status in ICCStatus}
_COMMAND_STATUS: Final = {status.value: status for status in CommandStatus}


def _specific_bytes(message: Message) -> tuple[int, int, int]:
    match message:
        case PC_to_RDR_IccPowerOn(bPowerSelect=value):
            return value, 0, 0
        case (
            PC_to_RDR_XfrBlock(bBWI=bwi, wLevelParameter=level)
            | PC_to_RDR_Secure(bBWI=bwi, wLevelParameter=level)
        ):
            return bwi, level & 0xFF, level >> 8
        case PC_to_RDR_SetParameters(bProtocolNum=value):
            return value, 0, 0
        case PC_to_RDR_IccClock(bClockCommand=value):
            return value, 0, 0
        case PC_to_RDR_T0APDU():
            return message.bmChanges, message.bClassGetResponse, message.bClassEnvelope
        case PC_to_RDR_Mechanical(bFunction=value):
            return value, 0, 0
        case UnknownCommand(abParameters=params):
            return params[0], params[1], params[2]
        case RDR_to_PC_DataBlock():
            return message.bStatus, message.bError, message.bChainParameter
        case RDR_to_PC_SlotStatus():
            return message.bStatus, message.bError, message.bClockStatus
        case RDR_to_PC_Parameters():
            return message.bStatus, message.bError, message.bProtocolNum
        case RDR_to_PC_Escape() | RDR_to_PC_DataRateAndClockFrequency():
            return message.bStatus, message.bError, 0
        case _:
            return 0, 0, 0


def encode(message: Message) -> bytes:
    """Return the wire bytes of ``message`` (a command, a response or an interrupt message)."""
    if type(message) is PC_to_RDR_XfrBlock:  # the APDU traffic, both ways: one pack, no matching
        data = message.abData
        level = message.wLevelParameter
        return (
            _pack_header(
                _XFR_BLOCK,
                len(data),
                message.bSlot,
                message.bSeq,
                message.bBWI,
                level & 0xFF,
                level >> 8,
            )
            + data
        )
    if type(message) is RDR_to_PC_DataBlock:
        data = message.abData
        return (
            _pack_header(
                _DATA_BLOCK,
                len(data),
                message.bSlot,
                message.bSeq,
                message.bmICCStatus | message.bmCommandStatus << 6,
                message.bError,
                message.bChainParameter,
            )
            + data
        )
    match message:
        case RDR_to_PC_NotifySlotChange(bmSlotICCState=state):
            return bytes([message.TYPE]) + state
        case RDR_to_PC_HardwareError():
            return _HARDWARE_ERROR.pack(
                message.TYPE, message.bSlot, message.bSeq, message.bHardwareErrorCode
            )
        case RDR_to_PC_SlotStatus():
            data = b""
        case RDR_to_PC_DataRateAndClockFrequency():
            data = _TWO_WORDS.pack(message.dwClockFrequency, message.dwDataRate)
        case RDR_to_PC_Parameters():
            data = message.abProtocolDataStructure
        case _:
            data = message.abData
    message_type = message.bMessageType if isinstance(message, UnknownCommand) else message.TYPE
    return (
        _HEADER.pack(
            message_type, len(data), message.bSlot, message.bSeq, *_specific_bytes(message)
        )
        + data
    )


_CommandParser = Callable[[int, int, int, int, int, bytes], Command]

_COMMAND_PARSERS: Final[dict[int, _CommandParser]] = {
    MessageType.PC_to_RDR_IccPowerOn: lambda s, q, b7, _8, _9, d: PC_to_RDR_IccPowerOn(s, q, b7, d),
    MessageType.PC_to_RDR_IccPowerOff: lambda s, q, _7, _8, _9, d: PC_to_RDR_IccPowerOff(s, q, d),
    MessageType.PC_to_RDR_GetSlotStatus: (
        lambda s, q, _7, _8, _9, d: PC_to_RDR_GetSlotStatus(s, q, d)
    ),
    MessageType.PC_to_RDR_XfrBlock: (
        lambda s, q, b7, b8, b9, d: PC_to_RDR_XfrBlock(s, q, d, b7, b8 | b9 << 8)
    ),
    MessageType.PC_to_RDR_GetParameters: (
        lambda s, q, _7, _8, _9, d: PC_to_RDR_GetParameters(s, q, d)
    ),
    MessageType.PC_to_RDR_ResetParameters: (
        lambda s, q, _7, _8, _9, d: PC_to_RDR_ResetParameters(s, q, d)
    ),
    MessageType.PC_to_RDR_SetParameters: (
        lambda s, q, b7, _8, _9, d: PC_to_RDR_SetParameters(s, q, b7, d)
    ),
    MessageType.PC_to_RDR_Escape: lambda s, q, _7, _8, _9, d: PC_to_RDR_Escape(s, q, d),
    MessageType.PC_to_RDR_IccClock: lambda s, q, b7, _8, _9, d: PC_to_RDR_IccClock(s, q, b7, d),
    MessageType.PC_to_RDR_T0APDU: (
        lambda s, q, b7, b8, b9, d: PC_to_RDR_T0APDU(s, q, b7, b8, b9, d)
    ),
    MessageType.PC_to_RDR_Secure: (
        lambda s, q, b7, b8, b9, d: PC_to_RDR_Secure(s, q, d, b7, b8 | b9 << 8)
    ),
    MessageType.PC_to_RDR_Mechanical: (
        lambda s, q, b7, _8, _9, d: PC_to_RDR_Mechanical(s, q, b7, d)
    ),
    MessageType.PC_to_RDR_Abort: lambda s, q, _7, _8, _9, d: PC_to_RDR_Abort(s, q, d),
    MessageType.PC_to_RDR_SetDataRateAndClockFrequency: (
        lambda s, q, _7, _8, _9, d: PC_to_RDR_SetDataRateAndClockFrequency(s, q, d)
    ),
}


# XfrBlocks (every APDU) are built without PC_to_RDR_XfrBlock.__init__ (see cardfloor.frozen):
# everything __post_init__ checks is guaranteed by the wire (bSlot, bSeq and bBWI are bytes,
# wLevelParameter two bytes, dwLength a u32).
_new: Final = object.__new__
_set_slot, _set_seq, _set_data, _set_bwi, _set_level = slot_setters(
    PC_to_RDR_XfrBlock, ("bSlot", "bSeq", "abData", "bBWI", "wLevelParameter")
)


def _xfr_block(bSlot: int, bSeq: int, data: bytes, b7: int, b8: int, b9: int) -> Command:
    """``PC_to_RDR_XfrBlock(bSlot, bSeq, data, b7, b8 | b9 << 8)`` from wire bytes."""
    message: PC_to_RDR_XfrBlock = _new(PC_to_RDR_XfrBlock)
    _set_slot(message, bSlot)
    _set_seq(message, bSeq)
    _set_data(message, data)
    _set_bwi(message, b7)
    _set_level(message, b8 | b9 << 8)
    return message


def _command(header: tuple[int, int, int, int, int, int, int], data: bytes) -> Command:
    message_type, _, bSlot, bSeq, b7, b8, b9 = header
    if message_type == _XFR_BLOCK:
        return _xfr_block(bSlot, bSeq, data, b7, b8, b9)
    parser = _COMMAND_PARSERS.get(message_type)
    if parser is None:
        return UnknownCommand(message_type, bSlot, bSeq, bytes((b7, b8, b9)), data)
    return parser(bSlot, bSeq, b7, b8, b9, data)


class CommandDecoder:
    """Reassembles PC_to_RDR messages from bulk-OUT bytes split anywhere.

    A header is checked as soon as it is in: a dwLength that would make the message longer
    than ``max_message_length`` (the dwMaxCCIDMessageLength advertised) raises
    :class:`CCIDRemoteProtocolError` and discards everything buffered, so a message is never
    buffered past that bound and the next bytes start a new message.
    """

    __slots__ = ("_buffer", "_max_data")

    def __init__(self, *, max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH) -> None:
        if max_message_length < MIN_MAX_MESSAGE_LENGTH:
            raise ValueError(
                f"max_message_length={max_message_length} is below {MIN_MAX_MESSAGE_LENGTH}"
            )
        self._max_data = max_message_length - HEADER_SIZE
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message held until the rest arrives."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add bulk-OUT bytes; read the messages they complete with :meth:`next_command`."""
        self._buffer += data

    def next_command(self) -> Command | None:
        """Return the next complete command, or None until more bytes arrive.

        Raises :class:`CCIDRemoteProtocolError` on an oversized dwLength, after discarding the
        buffer.
        """
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            return None
        header = _HEADER.unpack_from(buffer)
        length = header[1]
        if length > self._max_data:
            buffer.clear()
            raise CCIDRemoteProtocolError(
                f"message exceeds dwMaxCCIDMessageLength={self._max_data + HEADER_SIZE}",
                field="dwLength",
                value=length,
            )
        end = HEADER_SIZE + length
        if len(buffer) < end:
            return None
        data = bytes(buffer[HEADER_SIZE:end])
        del buffer[:end]
        return _command(header, data)

    def clear(self) -> None:
        """Forget a partial message (SET_CONFIGURATION, CLEAR_FEATURE(HALT), reset)."""
        self._buffer.clear()


def decode_command(data: bytes) -> Command:
    """Decode one whole PC_to_RDR message (``data`` must be exactly header + dwLength bytes)."""
    if len(data) >= HEADER_SIZE:
        message_type, length, bSlot, bSeq, b7, b8, b9 = _unpack_header(data)
        if message_type == _XFR_BLOCK and length == len(data) - HEADER_SIZE:
            return _xfr_block(bSlot, bSeq, data[HEADER_SIZE:], b7, b8, b9)
    header = _parse_header(data)
    return _command(header, data[HEADER_SIZE:])


def _parse_header(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    if len(data) < HEADER_SIZE:
        raise CCIDRemoteProtocolError(
            "message shorter than its 10-byte header", field="length", value=len(data)
        )
    header: tuple[int, int, int, int, int, int, int] = _HEADER.unpack_from(data)
    if header[1] != len(data) - HEADER_SIZE:
        raise CCIDRemoteProtocolError(
            f"dwLength disagrees with the {len(data) - HEADER_SIZE} data bytes received",
            field="dwLength",
            value=header[1],
        )
    return header


def _status(bStatus: int) -> tuple[ICCStatus, CommandStatus]:
    icc = _ICC_STATUS.get(bStatus & 0x03)
    command = _COMMAND_STATUS.get(bStatus >> 6)
    if icc is None or command is None or bStatus & 0x3C:
        raise CCIDRemoteProtocolError(
            "bStatus has RFU bits or values", field="bStatus", value=bStatus
        )
    return icc, command


def decode_response(data: bytes) -> Response:
    """Decode one whole RDR_to_PC bulk-IN message.

    Raises :class:`CCIDRemoteProtocolError` if it is malformed.
    """
    message_type, length, bSlot, bSeq, bStatus, bError, b9 = _parse_header(data)
    icc, command = _status(bStatus)
    payload = data[HEADER_SIZE:]
    match message_type:
        case MessageType.RDR_to_PC_DataBlock:
            return RDR_to_PC_DataBlock(bSlot, bSeq, icc, command, bError, b9, payload)
        case MessageType.RDR_to_PC_SlotStatus:
            if length:
                raise CCIDRemoteProtocolError(
                    "SlotStatus carries no data", field="dwLength", value=length
                )
            return RDR_to_PC_SlotStatus(bSlot, bSeq, icc, command, bError, b9)
        case MessageType.RDR_to_PC_Parameters:
            return RDR_to_PC_Parameters(bSlot, bSeq, icc, command, bError, b9, payload)
        case MessageType.RDR_to_PC_Escape:
            return RDR_to_PC_Escape(bSlot, bSeq, icc, command, bError, payload)
        case MessageType.RDR_to_PC_DataRateAndClockFrequency:
            if length != _TWO_WORDS.size:
                raise CCIDRemoteProtocolError(
                    "DataRateAndClockFrequency carries 8 bytes", field="dwLength", value=length
                )
            clock, rate = _TWO_WORDS.unpack(payload)
            return RDR_to_PC_DataRateAndClockFrequency(
                bSlot, bSeq, icc, command, bError, clock, rate
            )
        case _:
            raise CCIDRemoteProtocolError(
                "not an RDR_to_PC bulk message", field="bMessageType", value=message_type
            )


def decode_interrupt(data: bytes) -> InterruptMessage:
    """Decode one interrupt-IN message; :class:`CCIDRemoteProtocolError` if it is malformed."""
    if not data:
        raise CCIDRemoteProtocolError("empty interrupt message", field="length", value=0)
    if data[0] == MessageType.RDR_to_PC_NotifySlotChange:
        if len(data) < 2:
            raise CCIDRemoteProtocolError(
                "NotifySlotChange lacks bmSlotICCState", field="length", value=1
            )
        return RDR_to_PC_NotifySlotChange(bytes(data[1:]))
    if data[0] == MessageType.RDR_to_PC_HardwareError:
        if len(data) != _HARDWARE_ERROR.size:
            raise CCIDRemoteProtocolError(
                "HardwareError is 4 bytes", field="length", value=len(data)
            )
        _, bSlot, bSeq, code = _HARDWARE_ERROR.unpack(data)
        return RDR_to_PC_HardwareError(bSlot, bSeq, code)
    raise CCIDRemoteProtocolError("not an interrupt message", field="bMessageType", value=data[0])
