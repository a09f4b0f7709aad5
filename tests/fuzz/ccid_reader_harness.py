"""The sans-IO CCID reader and its ep0 pipe, driven by a script of host and card events.

Control byte: bit 0 inserts a card first, bit 1 sets the smallest dwMaxCCIDMessageLength
(271, so APDUs and responses chain), bit 2 makes the reader not a Gemalto one (no firmware
Escape). The payload is a script of operations, each an opcode byte and its arguments:

==  ==============  ==================================================================
0   bulk-OUT        u16 length, bytes: :meth:`CCIDReader.receive_bulk_out`
1   bulk-IN         u16 max_length: :meth:`CCIDReader.read_bulk_in` until an answer is whole
2   time            u8 sixteenths of a second pass: :meth:`CCIDReader.handle_timer`
3   card answers    u16 length, bytes (bit 15: 3 x low bits of 0x61 instead): apdu_response
4   card fails      :meth:`CCIDReader.apdu_failed`
5   insert          u8 length, ATR bytes: :meth:`CCIDReader.insert_card`
6   remove          :meth:`CCIDReader.remove_card`
7   ep0             8-byte SETUP, u16 length, data: :meth:`ControlPipe.handle`
8   USB reset       :meth:`ControlPipe.reset`
9   interrupt-IN    :meth:`CCIDReader.read_interrupt_in`
10  late answer     u8 request id: an answer to a request that may be long gone
==  ==============  ==================================================================

Bugs: any exception but :class:`ccid.CCIDRemoteProtocolError` (bulk-OUT framing),
:class:`ccid.CCIDLocalProtocolError` (a bad ATR) and :class:`ccid.usb.Stall` (ep0); a bulk-IN
or interrupt message that does not decode; a transfer longer than asked or mixing two
messages; more than one APDU with the card at a time; queued answers or buffered bytes growing
past their bounds; an error held in ``CCIDReader.error`` with no events returned beside it.

Each step acts on the events its input returned, as :class:`ccid.CCIDDevice` does.
"""

from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass, field
from typing import Final

from ccid import (
    CCIDLocalProtocolError,
    CCIDReader,
    CCIDRemoteProtocolError,
    ReaderConfiguration,
)
from ccid.card import TEST_ATR
from ccid.codec import decode_interrupt, decode_response, encode
from ccid.constants import (
    DEFAULT_MAX_MESSAGE_LENGTH,
    HEADER_SIZE,
    MAX_APDU_SIZE,
    MIN_MAX_MESSAGE_LENGTH,
    LevelParameter,
)
from ccid.control import ControlPipe
from ccid.descriptors import ReaderDescriptors
from ccid.events import APDUCancelled, APDURequested, CCIDReaderEvent
from ccid.messages import (
    Command,
    PC_to_RDR_Abort,
    PC_to_RDR_Escape,
    PC_to_RDR_GetParameters,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_SetParameters,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_NotifySlotChange,
)
from ccid.usb import SetupPacket, Stall

from .common import check, split_input

MAX_LEN: Final = 4096
#: Answers a reader may hold at once: each command drops what the host left unread first.
MAX_QUEUED_RESPONSES: Final = 4

BULK_OUT, BULK_IN, TIME, ANSWER, FAIL, INSERT, REMOVE, EP0, RESET, INTERRUPT, LATE = range(11)
_U16: Final = struct.Struct(">H")
_SELECT: Final = bytes.fromhex("00A4040007A0000000790100")


def _configurations() -> dict[int, tuple[ReaderConfiguration, ReaderDescriptors]]:
    built = {}
    for variant in range(4):
        config = ReaderConfiguration(
            idVendor=0x1234 if variant & 0x2 else 0x08E6,
            serial="FUZZ",
            max_message_length=(
                MIN_MAX_MESSAGE_LENGTH if variant & 0x1 else DEFAULT_MAX_MESSAGE_LENGTH
            ),
        )
        built[variant] = config, ReaderDescriptors.from_configuration(config)
    return built


_CONFIGURATIONS: Final = _configurations()


@dataclass(slots=True)
class _Script:
    data: bytes
    offset: int = 0

    def take(self, size: int) -> bytes:
        piece = self.data[self.offset : self.offset + size]
        self.offset += size
        return piece

    def u8(self) -> int:
        piece = self.take(1)
        return piece[0] if piece else 0

    def u16(self) -> int:
        piece = self.take(2)
        return _U16.unpack(piece)[0] if len(piece) == 2 else 0

    @property
    def done(self) -> bool:
        return self.offset >= len(self.data)


@dataclass(slots=True)
class _Host:
    """The host's view: what it has read, and which APDU the card side holds."""

    reader: CCIDReader
    pipe: ControlPipe
    max_length: int
    now: float = 0.0
    outstanding: list[int] = field(default_factory=list)

    def events(self, events: list[CCIDReaderEvent]) -> None:
        for event in events:
            if isinstance(event, APDURequested):
                self.outstanding.append(event.request)
                check(len(event.apdu) <= MAX_APDU_SIZE, f"an APDU of {len(event.apdu)} bytes")
            elif isinstance(event, APDUCancelled):
                check(event.request in self.outstanding, f"cancelled unknown {event.request}")
                self.outstanding.remove(event.request)
        check(len(self.outstanding) <= 1, f"{len(self.outstanding)} APDUs with the card at once")

    def bounds(self) -> None:
        reader = self.reader
        check(reader.queued_responses <= MAX_QUEUED_RESPONSES, "answers pile up")
        buffered = reader.buffered
        check(buffered < self.max_length, f"{buffered} bytes of a command buffered")

    def read_message(self, max_length: int) -> None:
        """Read the next answer to its end in transfers of ``max_length``, and decode it."""
        partial = bytearray()
        while True:
            piece = self.reader.read_bulk_in(max_length)
            check(len(piece) <= max(max_length, 0), f"{len(piece)} bytes for a {max_length} read")
            if not piece:
                check(not partial, "a message stopped halfway")
                return
            partial += piece
            if len(partial) < HEADER_SIZE:
                continue
            size = HEADER_SIZE + int.from_bytes(partial[1:5], "little")
            check(len(partial) <= size, "one bulk-IN transfer mixed two messages")
            check(size <= self.max_length, f"a {size}-byte message over dwMaxCCIDMessageLength")
            if len(partial) == size:
                decode_response(bytes(partial))  # an error here is the reader's bug
                return

    def answer(self, request: int, response: bytes) -> list[CCIDReaderEvent]:
        if request in self.outstanding:
            self.outstanding.remove(request)
        return self.reader.apdu_response(request, response)

    def control(self, setup: SetupPacket, data: bytes) -> list[CCIDReaderEvent]:
        try:
            answer, events = self.pipe.handle(setup, data)
        except Stall:
            return []
        check(len(answer) <= (setup.wLength if setup.is_in else 0), "ep0 answered too much")
        return events


def _step(host: _Host, script: _Script) -> None:
    reader = host.reader
    op = script.u8() % 11
    events: list[CCIDReaderEvent] = []
    if op == BULK_OUT:
        data = script.take(script.u16())
        with contextlib.suppress(CCIDRemoteProtocolError):
            events = reader.receive_bulk_out(data, host.now)
            check(reader.error is None or bool(events), "an error held with nothing beside it")
    elif op == BULK_IN:
        host.read_message(script.u16())
    elif op == TIME:
        host.now += script.u8() / 16
        timer = reader.get_timer()
        check(timer is None or reader.busy, "a timer without an APDU")
        events = reader.handle_timer(host.now)
    elif op == ANSWER:
        length = script.u16()
        response = b"\x61" * (3 * (length & 0x7FFF)) if length & 0x8000 else script.take(length)
        if host.outstanding:
            events = host.answer(host.outstanding[0], response)
    elif op == FAIL:
        if host.outstanding:
            request = host.outstanding.pop(0)
            events = reader.apdu_failed(request)
    elif op == INSERT:
        with contextlib.suppress(CCIDLocalProtocolError):
            events = reader.insert_card(script.take(script.u8()))
    elif op == REMOVE:
        events = reader.remove_card()
    elif op == EP0:
        setup = SetupPacket.from_bytes(script.take(8).ljust(8, b"\0"))
        events = host.control(setup, script.take(script.u16()))
    elif op == RESET:
        events = host.pipe.reset()
    elif op == INTERRUPT:
        message = reader.read_interrupt_in()
        if message is not None:
            check(isinstance(decode_interrupt(message), RDR_to_PC_NotifySlotChange), "interrupt")
    else:  # LATE
        events = host.answer(script.u8(), b"\x90\x00")
    host.events(events)
    host.bounds()


def fuzz_one(data: bytes) -> None:
    """Run the script in ``data`` against a fresh reader."""
    control, payload = split_input(data)
    config, descriptors = _CONFIGURATIONS[(control >> 1) & 0x3]
    reader = CCIDReader(config)
    host = _Host(reader, ControlPipe(descriptors, reader), config.max_message_length)
    if control & 0x1:
        host.events(reader.insert_card(TEST_ATR))
    script = _Script(payload)
    while not script.done:
        _step(host, script)
    # Whatever is left must still be readable, whole.
    while reader.bulk_in_pending:
        host.read_message(config.max_message_length)


# -- seeds -------------------------------------------------------------------------------------


def bulk_out(*commands: Command) -> bytes:
    data = b"".join(encode(command) for command in commands)
    return bytes([BULK_OUT]) + _U16.pack(len(data)) + data


def bulk_in(length: int = 65544) -> bytes:
    return bytes([BULK_IN]) + _U16.pack(min(length, 0xFFFF))


def ep0(setup: SetupPacket, data: bytes = b"") -> bytes:
    return bytes([EP0]) + setup.to_bytes() + _U16.pack(len(data)) + data


def answer(response: bytes) -> bytes:
    return bytes([ANSWER]) + _U16.pack(len(response)) + response


def seeds() -> dict[str, bytes]:
    """libccid's way through a session, a slow card, chaining, abort, ep0 and hot-plugging."""
    power_on = bulk_out(PC_to_RDR_IccPowerOn(0, 1)) + bulk_in()
    select = bulk_out(PC_to_RDR_XfrBlock(0, 5, _SELECT))
    session = (
        bulk_out(PC_to_RDR_GetSlotStatus(0, 0))
        + bulk_in()
        + power_on
        + bulk_out(PC_to_RDR_Escape(0, 2, b"\x02"))
        + bulk_in()
        + bulk_out(PC_to_RDR_GetParameters(0, 3))
        + bulk_in()
        + bulk_out(PC_to_RDR_SetParameters(0, 4, 1, bytes.fromhex("11 10 00 45 00 FE 00")))
        + bulk_in()
        + select
        + answer(b"\x6f\x00\x90\x00")
        + bulk_in(64)
        + bulk_in()
        + bytes([INTERRUPT])
        + bulk_out(PC_to_RDR_IccPowerOff(0, 6))
        + bulk_in()
    )
    slow_card = power_on + select + (bytes([TIME, 20]) + bulk_in()) * 3 + answer(b"\x90\x00")
    chained = (
        power_on
        + bulk_out(PC_to_RDR_XfrBlock(0, 2, bytes(200), 0, LevelParameter.BEGIN))
        + bulk_in()
        + bulk_out(PC_to_RDR_XfrBlock(0, 3, bytes(200), 0, LevelParameter.END))
        + bytes([ANSWER])
        + _U16.pack(0x8000 | 300)
        + bulk_in()
        + (bulk_out(PC_to_RDR_XfrBlock(0, 4, b"", 0, LevelParameter.NEXT_RESPONSE)) + bulk_in()) * 4
    )
    abort = (
        power_on
        + select
        + ep0(SetupPacket(0x21, 0x01, 5 << 8, 0, 0))
        + bulk_out(PC_to_RDR_Abort(0, 5))
        + bulk_in()
        + bulk_in()
    )
    control = b"".join(
        ep0(setup)
        for setup in (
            SetupPacket(0x80, 6, 0x0100, 0, 18),
            SetupPacket(0x80, 6, 0x0200, 0, 0xFFFF),
            SetupPacket(0x80, 6, 0x0302, 0x0409, 255),
            SetupPacket(0x00, 9, 1, 0, 0),
            SetupPacket(0x02, 1, 0, 0x03, 0),
            SetupPacket(0xA1, 0x02, 0, 0, 64),
            SetupPacket(0x23, 3, 4, 1, 0),
        )
    )
    hot_plug = (
        power_on
        + select
        + bytes([REMOVE])
        + bulk_in()
        + bytes([INTERRUPT, INSERT, 2])
        + b"\x3b\x00"
        + bytes([INTERRUPT])
        + power_on
        + bytes([RESET, LATE, 1])
    )
    return {
        "session": b"\x01" + session,
        "slow-card": b"\x01" + slow_card,
        "chained": b"\x03" + chained,
        "abort": b"\x01" + abort,
        "control": b"\x00" + control,
        "hot-plug": b"\x05" + hot_plug + bulk_out(PC_to_RDR_Escape(0, 9, b"\x02")) + bulk_in(),
    }
