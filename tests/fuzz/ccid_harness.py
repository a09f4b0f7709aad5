"""CCID codec: bulk-OUT reassembly, whole-message decoders, and the ATR parser.

Control byte: bits 0-4 split the stream (:func:`~tests.fuzz.common.chunks`); bit 5 sets the
smallest dwMaxCCIDMessageLength (271) so the length limit is hit with small inputs.

Bugs: any exception but :class:`ccid.CCIDRemoteProtocolError` (``ValueError`` for
:func:`cardfloor.iso7816.atr.parse_atr`); a split stream decoding differently from the whole
one before the first error; more bytes buffered than one message; a decoded message that does
not re-encode to its bytes (RFU bytes aside) or does not decode back to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from cardfloor.iso7816.atr import parse_atr
from ccid.card import TEST_ATR
from ccid.codec import CommandDecoder, decode_command, decode_interrupt, decode_response, encode
from ccid.constants import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    HEADER_SIZE,
    MIN_MAX_MESSAGE_LENGTH,
    ChainParameter,
    CommandStatus,
    ICCStatus,
)
from ccid.errors import CCIDRemoteProtocolError
from ccid.messages import (
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
    RDR_to_PC_HardwareError,
    RDR_to_PC_NotifySlotChange,
    RDR_to_PC_Parameters,
    RDR_to_PC_SlotStatus,
    Response,
    UnknownCommand,
)
from ccid.parameters import ProtocolParameters

from .common import check, chunks, split_input

MAX_LEN: Final = 4096


def _same_except_rfu(wire: bytes, original: bytes) -> bool:
    """Header bytes 7-9 may be RFU (sent as zero, ignored on receipt); the rest must match."""
    return wire[:7] == original[:7] and wire[HEADER_SIZE:] == original[HEADER_SIZE:]


def _reassemble(
    max_length: int, pieces: Iterable[bytes]
) -> tuple[list[tuple[Command, bytes]], str | None]:
    """Commands (with the bytes they came from) up to the first error, and that error."""
    decoder = CommandDecoder(max_message_length=max_length)
    commands: list[tuple[Command, bytes]] = []
    stream = bytearray()
    for piece in pieces:
        decoder.feed(piece)
        stream += piece
        while True:
            try:
                command = decoder.next_command()
            except CCIDRemoteProtocolError as error:
                check(decoder.buffered == 0, "a refused message left bytes buffered")
                return commands, f"{error.field}={error.value!r}"
            if command is None:
                break
            size = HEADER_SIZE + len(command.abData)
            commands.append((command, bytes(stream[:size])))
            del stream[:size]
        check(decoder.buffered < max_length, f"{decoder.buffered} bytes buffered")
        check(decoder.buffered == len(stream), "buffered disagrees with the bytes fed")
    return commands, None


def _check_command(command: Command, original: bytes) -> None:
    wire = encode(command)
    check(_same_except_rfu(wire, original), f"{command!r} re-encodes to other bytes")
    check(decode_command(wire) == command, f"{command!r} does not decode back to itself")


def _check_commands(control: int, payload: bytes) -> None:
    max_length = MIN_MAX_MESSAGE_LENGTH if control & 0x20 else DEFAULT_MAX_MESSAGE_LENGTH
    whole, whole_error = _reassemble(max_length, [payload])
    split, split_error = _reassemble(max_length, chunks(control, payload))
    check(split == whole, "a split stream reassembled to other commands")
    check(split_error == whole_error, f"split: {split_error}, whole: {whole_error}")
    for command, original in whole:
        _check_command(command, original)
    try:
        command = decode_command(payload)
    except CCIDRemoteProtocolError:
        return
    _check_command(command, payload)


def _check_response(payload: bytes) -> None:
    try:
        response = decode_response(payload)
    except CCIDRemoteProtocolError:
        return
    wire = encode(response)
    check(_same_except_rfu(wire, payload), f"{response!r} re-encodes to other bytes")
    if not isinstance(response, RDR_to_PC_Escape | RDR_to_PC_DataRateAndClockFrequency):
        check(wire == payload, f"{response!r} re-encodes to other bytes")
    check(decode_response(wire) == response, f"{response!r} does not decode back to itself")


def _check_interrupt(payload: bytes) -> None:
    try:
        message = decode_interrupt(payload)
    except CCIDRemoteProtocolError:
        return
    check(encode(message) == payload, f"{message!r} re-encodes to other bytes")


def _check_atr(payload: bytes) -> None:
    try:
        atr = parse_atr(payload)
    except ValueError:
        return
    check(atr.raw == payload, "the parsed ATR is not the bytes given")
    for index in range(1, len(atr.groups) + 2):
        for name in ("TA", "TB", "TC", "TD"):
            atr.global_byte(name, index)
    for protocol in range(16):
        for name in ("TA", "TB", "TC"):
            atr.protocol_byte(name, protocol)
    check(atr.default_protocol in (0, 1), f"default protocol T={atr.default_protocol}")
    ProtocolParameters.from_atr(atr)  # what the reader reports for this card


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` to every CCID decoder."""
    control, payload = split_input(data)
    _check_commands(control, payload)
    _check_response(payload)
    _check_interrupt(payload)
    _check_atr(payload[:40])


def seeds() -> dict[str, bytes]:
    """A libccid session's commands (one stream) and each kind of reader answer."""
    rate = bytes.fromhex("A00F0000 002A0000")
    commands: list[Command] = [
        PC_to_RDR_GetSlotStatus(0, 0),
        PC_to_RDR_IccPowerOn(0, 1),
        PC_to_RDR_Escape(0, 2, b"\x02"),
        PC_to_RDR_GetParameters(0, 3),
        PC_to_RDR_SetParameters(0, 4, 1, bytes.fromhex("11 10 00 45 00 FE 00")),
        PC_to_RDR_XfrBlock(0, 5, bytes.fromhex("00A4040007A0000000790100"), 4, 1),
        PC_to_RDR_XfrBlock(0, 6, b"\x00", 0, 2),
        PC_to_RDR_XfrBlock(0, 7, b"", 0, 0x10),
        PC_to_RDR_ResetParameters(0, 8),
        PC_to_RDR_IccClock(0, 9, 0),
        PC_to_RDR_T0APDU(0, 10, 1, 0, 0),
        PC_to_RDR_Secure(0, 11, b"\x00"),
        PC_to_RDR_Mechanical(0, 12, 1),
        PC_to_RDR_SetDataRateAndClockFrequency(0, 13, rate),
        PC_to_RDR_Abort(0, 14),
        PC_to_RDR_IccPowerOff(0, 15),
        UnknownCommand(0x99, 0, 16, b"\x01\x02\x03", b"\xff"),
    ]
    stream = b"".join(encode(command) for command in commands)
    out = {
        "commands": b"\x00" + stream,
        "commands-split": b"\x14" + stream,
        "commands-small-limit": b"\x20" + stream,
        "atr": b"\x00" + TEST_ATR,
        "notify-slot-change": b"\x00" + encode(RDR_to_PC_NotifySlotChange(b"\x03")),
        "hardware-error": b"\x00" + encode(RDR_to_PC_HardwareError(0, 1, 2)),
    }
    active = ICCStatus.PRESENT_ACTIVE
    responses: dict[str, Response] = {
        "data-block": RDR_to_PC_DataBlock(
            0, 1, active, CommandStatus.PROCESSED, 0, ChainParameter.BEGIN, b"\x90\x00"
        ),
        "slot-status": RDR_to_PC_SlotStatus(
            0, 2, ICCStatus.NOT_PRESENT, CommandStatus.FAILED, 0xFE
        ),
        "parameters": RDR_to_PC_Parameters(0, 3, active, abProtocolDataStructure=bytes(5)),
        "escape": RDR_to_PC_Escape(0, 4, active, abData=b"vscard"),
        "data-rate": RDR_to_PC_DataRateAndClockFrequency(
            0, 5, active, dwClockFrequency=4000, dwDataRate=10752
        ),
    }
    for name, response in responses.items():
        out[name] = b"\x00" + encode(response)
    return out
