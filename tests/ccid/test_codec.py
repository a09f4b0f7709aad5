"""The CCID wire format: every message's bytes, bulk-OUT reassembly by dwLength, and decoders
that only ever raise CCIDRemoteProtocolError on hostile bytes."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccid import CCIDRemoteProtocolError
from ccid.codec import (
    CommandDecoder,
    decode_command,
    decode_interrupt,
    decode_response,
    encode,
)
from ccid.constants import CommandStatus, ICCStatus
from ccid.messages import (
    Command,
    InterruptMessage,
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

ACTIVE = ICCStatus.PRESENT_ACTIVE
FAILED = CommandStatus.FAILED

COMMANDS: list[tuple[Command, str]] = [
    (PC_to_RDR_IccPowerOn(0, 1, 0), "62 00000000 00 01 00 0000"),
    (PC_to_RDR_IccPowerOn(0, 2, 3), "62 00000000 00 02 03 0000"),
    (PC_to_RDR_IccPowerOff(0, 3), "63 00000000 00 03 000000"),
    (PC_to_RDR_GetSlotStatus(0, 4), "65 00000000 00 04 000000"),
    (
        PC_to_RDR_XfrBlock(0, 5, bytes.fromhex("00A4040000")),
        "6F 05000000 00 05 00 0000 00A4040000",
    ),
    (PC_to_RDR_XfrBlock(0, 6, b"", 4, 0x0010), "6F 00000000 00 06 04 1000"),
    (PC_to_RDR_GetParameters(0, 7), "6C 00000000 00 07 000000"),
    (PC_to_RDR_ResetParameters(0, 8), "6D 00000000 00 08 000000"),
    (
        PC_to_RDR_SetParameters(0, 9, 1, bytes.fromhex("1110004D00FE00")),
        "61 07000000 00 09 01 0000 1110004D00FE00",
    ),
    (PC_to_RDR_Escape(0, 10, b"\x6a"), "6B 01000000 00 0A 000000 6A"),
    (PC_to_RDR_IccClock(0, 11, 1), "6E 00000000 00 0B 01 0000"),
    (PC_to_RDR_T0APDU(0, 12, 3, 0xA0, 0xB0), "6A 00000000 00 0C 03 A0 B0"),
    (PC_to_RDR_Secure(0, 13, b"\x00", 0, 0x0201), "69 01000000 00 0D 00 0102 00"),
    (PC_to_RDR_Mechanical(0, 14, 5), "71 00000000 00 0E 05 0000"),
    (PC_to_RDR_Abort(0, 15), "72 00000000 00 0F 000000"),
    (
        PC_to_RDR_SetDataRateAndClockFrequency(0, 16, bytes.fromhex("A00F0000002A0000")),
        "73 08000000 00 10 000000 A00F0000002A0000",
    ),
    (UnknownCommand(0x99, 1, 17, b"\x01\x02\x03", b"zz"), "99 02000000 01 11 010203 7A7A"),
]

RESPONSES: list[tuple[Response, str]] = [
    (
        RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=bytes.fromhex("3B8081")),
        "80 03000000 00 01 00 00 00 3B8081",
    ),
    (
        RDR_to_PC_DataBlock(0, 2, ICCStatus.NOT_PRESENT, FAILED, 0xFE),
        "80 00000000 00 02 42 FE 00",
    ),
    (
        RDR_to_PC_DataBlock(0, 3, ACTIVE, CommandStatus.TIME_EXTENSION, 1),
        "80 00000000 00 03 80 01 00",
    ),
    (RDR_to_PC_DataBlock(0, 4, ACTIVE, bChainParameter=0x10), "80 00000000 00 04 00 00 10"),
    (RDR_to_PC_SlotStatus(0, 5, ICCStatus.NOT_PRESENT), "81 00000000 00 05 02 00 00"),
    (
        RDR_to_PC_SlotStatus(1, 6, ICCStatus.PRESENT_INACTIVE, FAILED, 5, 3),
        "81 00000000 01 06 41 05 03",
    ),
    (
        RDR_to_PC_Parameters(0, 7, ACTIVE, bProtocolNum=1, abProtocolDataStructure=b"\x11" * 7),
        "82 07000000 00 07 00 00 01 11111111111111",
    ),
    (RDR_to_PC_Escape(0, 8, ACTIVE, FAILED, 0), "83 00000000 00 08 40 00 00"),
    (
        RDR_to_PC_DataRateAndClockFrequency(0, 9, ACTIVE, dwClockFrequency=4000, dwDataRate=10752),
        "84 08000000 00 09 00 00 00 A00F0000 002A0000",
    ),
]

INTERRUPTS: list[tuple[InterruptMessage, str]] = [
    (RDR_to_PC_NotifySlotChange.for_slot0(present=True, changed=True), "50 03"),
    (RDR_to_PC_NotifySlotChange.for_slot0(present=False, changed=True), "50 02"),
    (RDR_to_PC_HardwareError(0, 7, 1), "51 00 07 01"),
]


@pytest.mark.parametrize(("command", "wire"), COMMANDS, ids=lambda v: type(v).__name__)
def test_every_command_encodes_to_its_wire_bytes_and_back(command: Command, wire: str) -> None:
    assert encode(command) == bytes.fromhex(wire)
    assert decode_command(bytes.fromhex(wire)) == command


@pytest.mark.parametrize(("response", "wire"), RESPONSES, ids=lambda v: type(v).__name__)
def test_every_response_encodes_to_its_wire_bytes_and_back(response: Response, wire: str) -> None:
    assert encode(response) == bytes.fromhex(wire)
    assert decode_response(bytes.fromhex(wire)) == response


@pytest.mark.parametrize(("message", "wire"), INTERRUPTS, ids=lambda v: type(v).__name__)
def test_interrupt_messages_encode_to_their_wire_bytes_and_back(
    message: InterruptMessage, wire: str
) -> None:
    assert encode(message) == bytes.fromhex(wire)
    assert decode_interrupt(bytes.fromhex(wire)) == message


def test_status_bits_combine_icc_and_command_status() -> None:
    block = RDR_to_PC_DataBlock(0, 0, ICCStatus.NOT_PRESENT, FAILED, 0xFE)
    assert block.bStatus == 0x42


def test_rfu_bytes_are_ignored_on_receipt() -> None:
    assert decode_command(bytes.fromhex("65 00000000 00 01 FFFFFF")) == PC_to_RDR_GetSlotStatus(
        0, 1
    )


def test_messages_refuse_values_that_do_not_fit_their_fields() -> None:
    with pytest.raises(ValueError, match="bSeq"):
        PC_to_RDR_GetSlotStatus(0, 256)
    with pytest.raises(ValueError, match="wLevelParameter"):
        PC_to_RDR_XfrBlock(0, 0, b"", 0, 0x10000)
    with pytest.raises(ValueError, match="bmICCStatus 3 is RFU"):
        RDR_to_PC_SlotStatus(0, 0, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="abParameters"):
        UnknownCommand(0x99, 0, 0, b"\x00")


def test_decoder_reassembles_a_message_fed_byte_by_byte() -> None:
    wire = encode(PC_to_RDR_XfrBlock(0, 9, bytes(range(200))))
    decoder = CommandDecoder()
    for byte in wire[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_command() is None
    decoder.feed(wire[-1:])
    assert decoder.next_command() == PC_to_RDR_XfrBlock(0, 9, bytes(range(200)))
    assert decoder.buffered == 0


def test_decoder_frames_by_dwlength_not_by_transfer() -> None:
    # One transfer may end a message and begin the next (usbip-win2 rewrites packet sizes).
    first = encode(PC_to_RDR_XfrBlock(0, 1, b"A" * 100))
    second = encode(PC_to_RDR_GetSlotStatus(0, 2))
    stream = first + second
    decoder = CommandDecoder()
    decoder.feed(stream[:64])
    assert decoder.next_command() is None
    decoder.feed(stream[64:115])
    assert decoder.next_command() == PC_to_RDR_XfrBlock(0, 1, b"A" * 100)
    assert decoder.next_command() is None
    decoder.feed(stream[115:])
    assert decoder.next_command() == PC_to_RDR_GetSlotStatus(0, 2)


def test_largest_message_passes_and_one_byte_more_is_refused_naming_dwlength() -> None:
    decoder = CommandDecoder(max_message_length=65554)
    decoder.feed(encode(PC_to_RDR_XfrBlock(0, 1, bytes(65544))))
    command = decoder.next_command()
    assert isinstance(command, PC_to_RDR_XfrBlock)
    assert len(command.abData) == 65544
    decoder.feed(bytes.fromhex("6F 09000100 00 02 000000"))
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        decoder.next_command()
    assert (caught.value.field, caught.value.value) == ("dwLength", 65545)
    assert "dwLength=0x10009" in str(caught.value)


def test_oversized_header_is_refused_before_its_data_arrives_and_the_stream_resyncs() -> None:
    decoder = CommandDecoder()
    decoder.feed(bytes.fromhex("6F FFFFFFFF 00 01 000000"))
    with pytest.raises(CCIDRemoteProtocolError):
        decoder.next_command()
    assert decoder.buffered == 0
    decoder.feed(encode(PC_to_RDR_GetSlotStatus(0, 3)))
    assert decoder.next_command() == PC_to_RDR_GetSlotStatus(0, 3)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ("80 00000000 00 01 00", "length"),
        ("80 05000000 00 01 00 00 00 AA", "dwLength"),
        ("81 01000000 00 01 00 00 00 AA", "dwLength"),
        ("84 04000000 00 01 00 00 00 AABBCCDD", "dwLength"),
        ("80 00000000 00 01 03 00 00", "bStatus"),
        ("80 00000000 00 01 C0 00 00", "bStatus"),
        ("80 00000000 00 01 04 00 00", "bStatus"),
        ("6F 00000000 00 01 00 00 00", "bMessageType"),
    ],
)
def test_malformed_responses_raise_ccid_error_naming_the_field(wire: str, field: str) -> None:
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        decode_response(bytes.fromhex(wire))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("wire", "field"),
    [("", "length"), ("50", "length"), ("51 00", "length"), ("52 00", "bMessageType")],
)
def test_malformed_interrupt_messages_raise_ccid_error(wire: str, field: str) -> None:
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        decode_interrupt(bytes.fromhex(wire))
    assert caught.value.field == field


@settings(max_examples=300)
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
    max_message_length=st.sampled_from([271, 300, 65554]),
)
def test_decoder_survives_any_bytes_split_anywhere(
    data: bytes, cuts: list[int], max_message_length: int
) -> None:
    decoder = CommandDecoder(max_message_length=max_message_length)
    points = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    errors: list[str] = []
    for start, end in itertools.pairwise(points):
        decoder.feed(data[start:end])
        while True:
            try:
                command = decoder.next_command()
            except CCIDRemoteProtocolError as error:
                errors.append(error.field)
                continue
            if command is None:
                break
            assert len(encode(command)) <= max_message_length
        # Nothing beyond one message (plus what this feed brought) is ever held.
        assert decoder.buffered < max_message_length
    assert set(errors) <= {"dwLength"}


@given(st.binary(max_size=300))
def test_response_and_interrupt_decoders_raise_only_ccid_error(data: bytes) -> None:
    for decode in (decode_response, decode_interrupt, decode_command):
        with contextlib.suppress(CCIDRemoteProtocolError):
            decode(data)


@given(
    message_type=st.integers(0, 255),
    bSlot=st.integers(0, 255),
    bSeq=st.integers(0, 255),
    params=st.binary(min_size=3, max_size=3),
    data=st.binary(max_size=100),
)
def test_any_well_framed_command_decodes_and_reencodes_to_a_message_that_decodes_the_same(
    message_type: int, bSlot: int, bSeq: int, params: bytes, data: bytes
) -> None:
    wire = bytes([message_type]) + len(data).to_bytes(4, "little") + bytes([bSlot, bSeq]) + params
    command = decode_command(wire + data)
    assert (command.bSlot, command.bSeq, command.abData) == (bSlot, bSeq, data)
    assert decode_command(encode(command)) == command


@given(
    bSlot=st.integers(0, 255),
    bSeq=st.integers(0, 255),
    bBWI=st.integers(0, 255),
    level=st.integers(0, 0xFFFF),
    data=st.binary(max_size=300),
    chunk=st.integers(1, 64),
)
def test_decoded_xfr_blocks_are_the_ones_the_constructor_builds(
    bSlot: int, bSeq: int, bBWI: int, level: int, data: bytes, chunk: int
) -> None:
    # XfrBlocks are built without PC_to_RDR_XfrBlock.__init__: they must still pass its checks
    # and compare, hash and print like constructed ones, from decode_command and the decoder.
    built = PC_to_RDR_XfrBlock(bSlot, bSeq, data, bBWI, level)
    wire = encode(built)
    decoder = CommandDecoder()
    decoded: list[Command] = []
    for start in range(0, len(wire), chunk):
        decoder.feed(wire[start : start + chunk])
        while (command := decoder.next_command()) is not None:
            decoded.append(command)
    decoded.append(decode_command(wire))
    for message in decoded:
        rebuilt = dataclasses.replace(message)  # runs __init__ and __post_init__
        assert type(message) is PC_to_RDR_XfrBlock
        assert message == rebuilt == built
        assert hash(message) == hash(rebuilt)
        assert repr(message) == repr(rebuilt)
        assert encode(message) == wire
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.bSeq = 1  # type: ignore[misc]


@given(
    bSlot=st.integers(0, 255),
    bSeq=st.integers(0, 255),
    icc=st.sampled_from(ICCStatus),
    command=st.sampled_from(CommandStatus),
    bError=st.integers(0, 255),
    chain=st.integers(0, 255),
    data=st.binary(max_size=40),
)
def test_data_block_encodes_its_status_byte_and_decodes_back(
    bSlot: int,
    bSeq: int,
    icc: ICCStatus,
    command: CommandStatus,
    bError: int,
    chain: int,
    data: bytes,
) -> None:
    block = RDR_to_PC_DataBlock(bSlot, bSeq, icc, command, bError, chain, data)
    wire = encode(block)
    assert (
        wire
        == bytes(
            [0x80, *len(data).to_bytes(4, "little"), bSlot, bSeq, icc | command << 6, bError, chain]
        )
        + data
    )
    assert decode_response(wire) == block
