"""APDUs and SimpleTLV: the parsers a card applies to what a host sends, and their encoders.

Control byte: unused (kept so every target's inputs look alike).

Bugs: any exception but :class:`cardfloor.iso7816.apdu.APDUFormatError` /
:class:`cacard.tlv.TLVError` (a plain ``ValueError`` from a constructor is a bug: the parser
let through what it cannot represent); a command or response that does not re-encode to
exactly its bytes; a TLV list that does not decode back to itself.
"""

from __future__ import annotations

from typing import Final

from cacard.tlv import TLV, TLVError, decode, encode, join_buffers, split_buffers
from cardfloor.iso7816.apdu import EXTENDED_MAX, SHORT_MAX, APDUFormatError, CommandAPDU, Response

from .common import check, split_input

MAX_LEN: Final = 4096


def _check_command(payload: bytes) -> None:
    try:
        command = CommandAPDU.from_bytes(payload)
    except APDUFormatError:
        return
    check(command.to_bytes() == payload, f"{command!r} re-encodes to other bytes")
    check(command.case in (1, 2, 3, 4), f"case {command.case}")
    check(0 <= command.ne <= (EXTENDED_MAX if command.extended else SHORT_MAX), "Ne out of range")


def _check_response(payload: bytes) -> None:
    try:
        response = Response.from_bytes(payload)
    except APDUFormatError:
        return
    check(response.to_bytes() == payload, f"{response!r} re-encodes to other bytes")


def _check_tlv(payload: bytes) -> None:
    try:
        items = decode(payload)
    except TLVError:
        pass
    else:
        check(decode(encode(items)) == items, "SimpleTLV does not decode back to itself")
    # The same bytes as the two buffers of a CAC object, cut where the first says it ends.
    cut = 2 + int.from_bytes(payload[:2], "little")
    try:
        joined = join_buffers(payload[:cut], payload[cut:])
    except TLVError:
        return
    check(join_buffers(*split_buffers(joined)) == joined, "CAC buffers do not round-trip")


def fuzz_one(data: bytes) -> None:
    """Parse ``data`` as a command APDU, a response APDU and SimpleTLV."""
    _, payload = split_input(data)
    _check_command(payload)
    _check_response(payload)
    _check_tlv(payload)


def seeds() -> dict[str, bytes]:
    """Every length case, short and extended, and CAC TLV buffers."""
    commands = {
        "case1": CommandAPDU(0x00, 0xA4, 0x04, 0x00),
        "case2s": CommandAPDU(0x80, 0x56, 0x01, 0x00, le=256),
        "case3s": CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000790100")),
        "case4s": CommandAPDU(0x00, 0xA4, 0x04, 0x00, bytes.fromhex("A0000000790100"), 0x0D),
        "case2e": CommandAPDU(0x00, 0xC0, 0x00, 0x00, le=65536, extended=True),
        "case3e": CommandAPDU(0x80, 0x42, 0x00, 0x00, bytes(300), extended=True),
        "case4e": CommandAPDU(0x80, 0x42, 0x00, 0x00, bytes(256), 256, extended=True),
    }
    out = {name: b"\x00" + command.to_bytes() for name, command in commands.items()}
    items = [TLV(0x71, b"\x01"), TLV(0x70, bytes(300))]
    tags, values = split_buffers(items)
    out["tlv"] = b"\x00" + encode(items)
    out["cac-buffers"] = b"\x00" + tags + values
    out["response"] = b"\x00" + Response(0x6108, b"\x6f\x00").to_bytes()
    return out
