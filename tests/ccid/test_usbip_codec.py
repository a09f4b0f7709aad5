"""The USB/IP wire format: golden bytes from real peers and the spec's offsets, round trips
split anywhere, and decoders that refuse a bad header before reading what it announces."""

from __future__ import annotations

import contextlib
import dataclasses
import tracemalloc
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccid.usb import InterfaceSummary, Speed
from ccid.usbip import (
    CmdSubmit,
    CmdUnlink,
    Direction,
    ExportedDevice,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    OpStatus,
    RetSubmit,
    RetUnlink,
    USBIPMessage,
    USBIPRemoteProtocolError,
    encode_usbip,
)
from ccid.usbip.codec import Phase, ReplyDecoder, RequestDecoder
from ccid.usbip.constants import OpCode

# Captured live from Debian's usbip 2.0 tools: what `usbip list -r` sends, and what the real
# usbipd answers to it with nothing exported and to an IMPORT of an unknown busid.
USBIP_LIST_REQUEST = bytes.fromhex("0111 8005 00000000")
USBIPD_EMPTY_DEVLIST = bytes.fromhex("0111 0005 00000000 00000000")
USBIPD_UNKNOWN_BUSID = bytes.fromhex("0111 0003 00000004")

DEVICE = ExportedDevice(
    path="/sys/devices/pci0000:00/0000:00:1d.0/usb1/1-1",
    busid="1-1",
    busnum=1,
    devnum=2,
    speed=Speed.FULL,
    idVendor=0x08E6,
    idProduct=0x4433,
    bcdDevice=0x0100,
    bDeviceClass=0,
    bDeviceSubClass=0,
    bDeviceProtocol=0,
    bConfigurationValue=1,
    bNumConfigurations=1,
    bNumInterfaces=1,
    interfaces=(InterfaceSummary(0x0B, 0, 0),),
)


def device_record_from_spec(device: ExportedDevice) -> bytes:
    """``usbip_usb_device`` built from the documented offsets, not from the codec's structs."""
    record = bytearray(312)
    path = device.path.encode()
    record[0 : len(path)] = path
    record[256 : 256 + len(device.busid)] = device.busid.encode()
    record[288:292] = device.busnum.to_bytes(4, "big")
    record[292:296] = device.devnum.to_bytes(4, "big")
    record[296:300] = device.speed.to_bytes(4, "big")
    record[300:302] = device.idVendor.to_bytes(2, "big")
    record[302:304] = device.idProduct.to_bytes(2, "big")
    record[304:306] = device.bcdDevice.to_bytes(2, "big")
    record[306:312] = bytes(
        [
            device.bDeviceClass,
            device.bDeviceSubClass,
            device.bDeviceProtocol,
            device.bConfigurationValue,
            device.bNumConfigurations,
            device.bNumInterfaces,
        ]
    )
    return bytes(record)


# vhci's first request after attach: GET_DESCRIPTOR(DEVICE) with wLength 64 on ep0.
GET_DEVICE_DESCRIPTOR = CmdSubmit(
    seqnum=1,
    devid=0x00010002,
    direction=Direction.IN,
    ep=0,
    transfer_flags=0x200,
    transfer_buffer_length=64,
    setup=bytes.fromhex("8006000100004000"),
)
DESCRIPTOR = bytes.fromhex("12011001000000 40 e6083344 0001 010203 01".replace(" ", ""))

GOLDEN: list[tuple[USBIPMessage, bytes]] = [
    (OpReqDevlist(), USBIP_LIST_REQUEST),
    (OpRepDevlist(()), USBIPD_EMPTY_DEVLIST),
    (OpRepImport(OpStatus.NODEV), USBIPD_UNKNOWN_BUSID),
    (OpReqImport("1-1"), bytes.fromhex("0111 8003 00000000") + b"1-1" + bytes(29)),
    (
        OpRepDevlist((DEVICE,)),
        bytes.fromhex("0111 0005 00000000 00000001")
        + device_record_from_spec(DEVICE)
        + bytes.fromhex("0B000000"),
    ),
    (
        OpRepImport(OpStatus.OK, DEVICE.without_interfaces()),
        bytes.fromhex("0111 0003 00000000") + device_record_from_spec(DEVICE),
    ),
    (
        GET_DEVICE_DESCRIPTOR,
        bytes.fromhex(
            "00000001 00000001 00010002 00000001 00000000"
            "00000200 00000040 00000000 00000000 00000000 8006000100004000"
        ),
    ),
    (
        # Bulk OUT 3 with 5 bytes, as usbip-win2 sends it: number_of_packets 0xFFFFFFFF.
        CmdSubmit(7, 0x00010002, Direction.OUT, 3, 0, 5, 0, -1, 0, bytes(8), b"hello"),
        bytes.fromhex(
            "00000001 00000007 00010002 00000000 00000003"
            "00000000 00000005 00000000 FFFFFFFF 00000000 0000000000000000"
        )
        + b"hello",
    ),
    (
        # The stub's answer: devid, direction and ep 0, then actual_length bytes.
        RetSubmit(1, 0, 18, data=DESCRIPTOR),
        bytes.fromhex(
            "00000003 00000001 00000000 00000000 00000000"
            "00000000 00000012 00000000 00000000 00000000 0000000000000000"
        )
        + DESCRIPTOR,
    ),
    (
        RetSubmit(9, -32),
        bytes.fromhex("00000003 00000009 00000000 00000000 00000000 FFFFFFE0") + bytes(24),
    ),
    (
        CmdUnlink(8, 0x00010002, unlink_seqnum=5),
        bytes.fromhex("00000002 00000008 00010002 00000000 00000000 00000005") + bytes(24),
    ),
    (
        RetUnlink(8, -104),
        bytes.fromhex("00000004 00000008 00000000 00000000 00000000 FFFFFF98") + bytes(24),
    ),
]


def decode_requests(
    wire: bytes, *, urb: bool = False, chunk: int | None = None, whole: bool = True
) -> list[USBIPMessage]:
    decoder = RequestDecoder()
    if urb:
        decoder.start_urb_phase()
    messages: list[USBIPMessage] = []
    step = chunk or len(wire) or 1
    for start in range(0, len(wire), step):
        decoder.feed(wire[start : start + step])
        while (request := decoder.next_request()) is not None:
            messages.append(request)
    assert decoder.buffered == 0 or not whole
    return messages


def decode_replies(
    wire: bytes,
    *,
    expect: OpCode | None = None,
    submits: tuple[CmdSubmit, ...] = (),
    whole: bool = True,
) -> list[USBIPMessage]:
    pending = {submit.seqnum: submit for submit in submits}
    decoder = ReplyDecoder(pending.get)
    if expect is None:
        decoder.phase = Phase.URB
    else:
        decoder.expect(expect)
    decoder.feed(wire)
    messages: list[USBIPMessage] = []
    while (reply := decoder.next_reply()) is not None:
        messages.append(reply)
    assert decoder.buffered == 0 or not whole
    return messages


def decode(message: USBIPMessage, wire: bytes, *, whole: bool = True) -> list[USBIPMessage]:
    """Decode ``wire`` with the decoder, and in the phase, that reads ``message``."""
    match message:
        case OpReqDevlist() | OpReqImport():
            return decode_requests(wire, whole=whole)
        case CmdSubmit() | CmdUnlink():
            return decode_requests(wire, urb=True, whole=whole)
        case OpRepDevlist():
            return decode_replies(wire, expect=OpCode.OP_REP_DEVLIST, whole=whole)
        case OpRepImport():
            return decode_replies(wire, expect=OpCode.OP_REP_IMPORT, whole=whole)
        case _:
            stalled = CmdSubmit(9, 0x00010002, Direction.IN, 0, transfer_buffer_length=8)
            return decode_replies(wire, submits=(GET_DEVICE_DESCRIPTOR, stalled), whole=whole)


@pytest.mark.parametrize(("message", "wire"), GOLDEN, ids=lambda v: type(v).__name__)
def test_every_message_encodes_to_its_golden_bytes_and_back(
    message: USBIPMessage, wire: bytes
) -> None:
    assert encode_usbip(message) == wire
    assert decode(message, wire) == [message]


def test_import_request_split_like_usbip_attach_waits_for_the_busid() -> None:
    decoder = RequestDecoder()
    wire = encode_usbip(OpReqImport("1-1"))
    decoder.feed(wire[:8])  # `usbip attach` writes the header, then the busid
    assert decoder.next_request() is None
    decoder.feed(wire[8:])
    assert decoder.next_request() == OpReqImport("1-1")


@given(st.integers(min_value=1, max_value=64))
def test_urb_stream_decodes_the_same_split_anywhere(chunk: int) -> None:
    messages: list[USBIPMessage] = [
        GET_DEVICE_DESCRIPTOR,
        CmdSubmit(2, 0x00010002, Direction.OUT, 3, transfer_buffer_length=70, data=bytes(70)),
        CmdUnlink(3, 0x00010002, 2),
        CmdSubmit(4, 0x00010002, Direction.IN, 2, transfer_buffer_length=65556),
    ]
    wire = b"".join(encode_usbip(message) for message in messages)
    assert decode_requests(wire, urb=True, chunk=chunk) == messages


def test_ret_submit_for_an_out_urb_carries_no_data_whatever_its_direction_field_says() -> None:
    out = CmdSubmit(5, 1, Direction.OUT, 3, transfer_buffer_length=3, data=b"abc")
    # The Linux stub sends direction 0 in every reply; framing follows the URB, not the reply.
    ret = RetSubmit(5, 0, actual_length=3, direction=1)
    assert decode_replies(encode_usbip(ret), submits=(out,)) == [ret]


def test_devlist_reply_arriving_in_pieces_is_decoded_once_complete() -> None:
    second = dataclasses.replace(DEVICE, busid="1-2", devnum=3)
    wire = encode_usbip(OpRepDevlist((DEVICE, second)))
    decoder = ReplyDecoder(lambda _: None)
    decoder.expect(OpCode.OP_REP_DEVLIST)
    for byte in wire[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_reply() is None
    decoder.feed(wire[-1:])
    assert decoder.next_reply() == OpRepDevlist((DEVICE, second))


def test_a_path_that_is_not_utf8_survives_the_round_trip() -> None:
    wire = bytearray(encode_usbip(OpRepDevlist((DEVICE,))))
    wire[12:14] = b"\xff\xfe"
    (reply,) = decode_replies(bytes(wire), expect=OpCode.OP_REP_DEVLIST)
    assert isinstance(reply, OpRepDevlist)
    assert encode_usbip(reply) == bytes(wire)


# --- refusals -----------------------------------------------------------------------------

URB_BASIC = "00000001 00000001 00010002"


@pytest.mark.parametrize(
    ("wire", "urb", "field"),
    [
        (bytes.fromhex("0106 8005 00000000"), False, "op_common.version"),
        (bytes.fromhex("0111 8006 00000000"), False, "op_common.code"),
        (bytes.fromhex("0111 0005 00000000"), False, "op_common.code"),
        (bytes.fromhex("0111 8003 00000000") + b"a" * 32, False, "OP_REQ_IMPORT.busid"),
        (bytes.fromhex("0111 8003 00000000") + bytes(32), False, "OP_REQ_IMPORT.busid"),
        (bytes.fromhex("0111 8003 00000000") + b"\xe9-1" + bytes(29), False, "OP_REQ_IMPORT.busid"),
        (bytes.fromhex("00000003") + bytes(44), True, "usbip_header_basic.command"),
        (bytes.fromhex(URB_BASIC + "00000002 00000000") + bytes(28), True, "CMD_SUBMIT.direction"),
        (bytes.fromhex(URB_BASIC + "00000001 00000010") + bytes(28), True, "CMD_SUBMIT.ep"),
        (
            bytes.fromhex(URB_BASIC + "00000001 00000002 00000000 FFFFFFFF") + bytes(20),
            True,
            "CMD_SUBMIT.transfer_buffer_length",
        ),
        (
            bytes.fromhex(URB_BASIC + "00000000 00000003 00000000 7FFFFFFF") + bytes(20),
            True,
            "CMD_SUBMIT.transfer_buffer_length",
        ),
        (
            bytes.fromhex(URB_BASIC + "00000001 00000002 00000000 00000008 00000000 00000001")
            + bytes(12),
            True,
            "CMD_SUBMIT.number_of_packets",
        ),
        (
            bytes.fromhex("00000002 00000001 00010002 00000007 00000000") + bytes(28),
            True,
            "CMD_UNLINK.direction",
        ),
    ],
    ids=[
        "old-version",
        "unknown-op-code",
        "reply-code-from-client",
        "busid-without-nul",
        "empty-busid",
        "busid-not-ascii",
        "ret-submit-from-client",
        "direction-2",
        "endpoint-16",
        "in-length-4GiB",
        "out-length-2GiB",
        "isochronous",
        "unlink-direction-7",
    ],
)
def test_a_bad_header_is_refused_naming_its_field(wire: bytes, urb: bool, field: str) -> None:
    decoder = RequestDecoder()
    if urb:
        decoder.start_urb_phase()
    decoder.feed(wire)
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        decoder.next_request()
    assert caught.value.field == field
    # The stream is out of sync for good.
    with pytest.raises(USBIPRemoteProtocolError):
        decoder.feed(b"\x00")


def test_an_in_urb_may_ask_for_2_gib_because_nothing_follows_its_header() -> None:
    header = bytes.fromhex(URB_BASIC + "00000001 00000002 00000000 7FFFFFFF") + bytes(20)
    (request,) = decode_requests(header, urb=True)
    assert isinstance(request, CmdSubmit)
    assert request.transfer_buffer_length == 0x7FFFFFFF


def test_a_urb_announcing_2_gib_is_refused_after_its_header_without_allocating() -> None:
    decoder = RequestDecoder()
    decoder.start_urb_phase()
    header = bytes.fromhex(URB_BASIC + "00000000 00000003 00000000 7FFFFFFF") + bytes(20)
    tracemalloc.start()
    try:
        decoder.feed(header)
        with pytest.raises(USBIPRemoteProtocolError, match="transfer_buffer_length=0x7FFFFFFF"):
            decoder.next_request()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


@pytest.mark.parametrize(
    ("wire", "expect", "field"),
    [
        (bytes.fromhex("0110 0005 00000000 00000000"), OpCode.OP_REP_DEVLIST, "op_common.version"),
        (USBIPD_EMPTY_DEVLIST, OpCode.OP_REP_IMPORT, "op_common.code"),
        (
            bytes.fromhex("0111 0005 00000000 FFFFFFFF"),
            OpCode.OP_REP_DEVLIST,
            "OP_REP_DEVLIST.ndev",
        ),
        (USBIPD_EMPTY_DEVLIST + b"\x00", OpCode.OP_REP_DEVLIST, "op_common"),
        (
            bytes.fromhex("0111 0003 00000000")
            + bytes(256)
            + b"1-1".ljust(32, b"\xff")
            + bytes(24),
            OpCode.OP_REP_IMPORT,
            "OP_REP_IMPORT.busid",
        ),
        # Found by the fuzzer (tests/fuzz): a path filling all 256 bytes raised ValueError.
        (
            bytes.fromhex("0111 0003 00000000")
            + b"/" * 256
            + b"1-1".ljust(32, b"\x00")
            + bytes(24),
            OpCode.OP_REP_IMPORT,
            "OP_REP_IMPORT.path",
        ),
        (
            bytes.fromhex("0111 0005 00000000 00000001")
            + b"\xa6" * 256
            + b"1-1".ljust(32, b"\x00")
            + bytes(24),
            OpCode.OP_REP_DEVLIST,
            "OP_REP_DEVLIST.path",
        ),
    ],
    ids=[
        "version",
        "wrong-reply",
        "4-billion-devices",
        "trailing-bytes",
        "busid-without-nul",
        "import-path-without-nul",
        "devlist-path-without-nul",
    ],
)
def test_a_bad_op_reply_is_refused_naming_its_field(
    wire: bytes, expect: OpCode, field: str
) -> None:
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        decode_replies(wire, expect=expect)
    assert caught.value.field == field


IN_8 = CmdSubmit(1, 1, Direction.IN, 2, transfer_buffer_length=8)


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        (encode_usbip(RetSubmit(2, 0, 0)), "RET_SUBMIT.seqnum"),
        (encode_usbip(RetSubmit(1, 0, 9, data=bytes(9))), "RET_SUBMIT.actual_length"),
        (encode_usbip(GET_DEVICE_DESCRIPTOR), "usbip_header_basic.command"),
        (encode_usbip(RetSubmit(1, 0, 0, number_of_packets=3)), "RET_SUBMIT.number_of_packets"),
    ],
    ids=["unknown-seqnum", "more-than-asked", "cmd-from-server", "isochronous"],
)
def test_a_bad_urb_reply_is_refused_as_vhci_would(wire: bytes, field: str) -> None:
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        decode_replies(wire, submits=(IN_8,))
    assert caught.value.field == field


@pytest.mark.parametrize(
    "build",
    [
        lambda: OpRepImport(OpStatus.OK),
        lambda: OpRepImport(OpStatus.NODEV, DEVICE.without_interfaces()),
        lambda: OpRepImport(OpStatus.OK, DEVICE),
        lambda: OpRepDevlist((DEVICE.without_interfaces(),)),
        lambda: OpReqImport("x" * 32),
        lambda: CmdSubmit(1, 1, Direction.OUT, 3, transfer_buffer_length=4, data=b"abc"),
        lambda: CmdSubmit(1, 1, Direction.IN, 16),
        lambda: RetSubmit(1, 0, 4, data=b"abc"),
        lambda: dataclasses.replace(DEVICE, bNumInterfaces=2),
    ],
    ids=[
        "ok-without-device",
        "error-with-device",
        "import-with-interfaces",
        "devlist-without-interfaces",
        "busid-too-long",
        "out-data-length",
        "endpoint-16",
        "ret-data-length",
        "interface-count",
    ],
)
def test_a_message_that_could_not_be_encoded_cannot_be_built(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        build()


# --- fuzzing --------------------------------------------------------------------------------

MAX_TRANSFER = 4096


@given(st.binary(max_size=600), st.booleans(), st.integers(min_value=1, max_value=97))
def test_request_decoder_raises_only_protocol_errors_and_stays_bounded(
    wire: bytes, urb: bool, chunk: int
) -> None:
    decoder = RequestDecoder(max_transfer_length=MAX_TRANSFER)
    if urb:
        decoder.start_urb_phase()
    with contextlib.suppress(USBIPRemoteProtocolError):
        for start in range(0, len(wire), chunk):
            decoder.feed(wire[start : start + chunk])
            while decoder.next_request() is not None:
                pass
            assert decoder.buffered < 48 + MAX_TRANSFER + chunk


@given(st.lists(st.sampled_from([bytes.fromhex("00000001"), bytes(4), b"\xff" * 4]), max_size=40))
def test_request_decoder_survives_urb_shaped_garbage(words: list[bytes]) -> None:
    decoder = RequestDecoder(max_transfer_length=MAX_TRANSFER)
    decoder.start_urb_phase()
    decoder.feed(b"".join(words))
    with contextlib.suppress(USBIPRemoteProtocolError):
        while decoder.next_request() is not None:
            pass


@given(
    st.binary(max_size=800),
    st.sampled_from([OpCode.OP_REP_DEVLIST, OpCode.OP_REP_IMPORT, None]),
    st.sampled_from([Direction.IN, Direction.OUT]),
)
def test_reply_decoder_raises_only_protocol_errors(
    wire: bytes, expect: OpCode | None, direction: Direction
) -> None:
    def submitted(seqnum: int) -> CmdSubmit:
        length = seqnum & 0xFF
        data = bytes(length) if direction == Direction.OUT else b""
        return CmdSubmit(seqnum, 1, direction, 2, transfer_buffer_length=length, data=data)

    decoder = ReplyDecoder(submitted, max_transfer_length=MAX_TRANSFER, max_devices=4)
    if expect is None:
        decoder.phase = Phase.URB
    else:
        decoder.expect(expect)
    with contextlib.suppress(USBIPRemoteProtocolError):
        decoder.feed(wire)
        while decoder.next_reply() is not None:
            pass


@given(
    st.sampled_from(GOLDEN),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=4),
    st.integers(min_value=0),
)
def test_mutated_golden_messages_decode_or_raise_protocol_errors(
    golden: tuple[USBIPMessage, bytes], changes: list[tuple[int, int]], cut: int
) -> None:
    message, wire = golden
    mutated = bytearray(wire)
    for position, value in changes:
        mutated[position % len(mutated)] = value
    mutated = mutated[: len(mutated) - cut % 8]
    with contextlib.suppress(USBIPRemoteProtocolError):
        decode(message, bytes(mutated), whole=False)


u32 = st.integers(0, 0xFFFFFFFF)
s32 = st.integers(-0x80000000, 0x7FFFFFFF)


@given(
    st.tuples(u32, u32, st.sampled_from(Direction), st.integers(0, 15), u32),
    st.integers(0, MAX_TRANSFER),
    st.tuples(s32, st.sampled_from([0, -1]), s32, st.binary(min_size=8, max_size=8)),
    st.integers(min_value=1, max_value=97),
)
def test_decoded_cmd_submits_are_the_ones_the_constructor_builds(
    basic: tuple[int, int, Direction, int, int],
    length: int,
    rest: tuple[int, int, int, bytes],
    chunk: int,
) -> None:
    # CMD_SUBMITs are built without CmdSubmit.__init__: they must still pass its checks and
    # compare, hash and print like constructed ones.
    seqnum, devid, direction, ep, flags = basic
    start_frame, packets, interval, setup = rest
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    built = CmdSubmit(
        seqnum,
        devid,
        direction,
        ep,
        flags,
        length,
        start_frame,
        packets,
        interval,
        setup,
        data if direction == Direction.OUT else b"",
    )
    wire = encode_usbip(built) * 2
    decoder = RequestDecoder(max_transfer_length=MAX_TRANSFER)
    decoder.start_urb_phase()
    decoded: list[USBIPMessage] = []
    for start in range(0, len(wire), chunk):
        decoder.feed(wire[start : start + chunk])
        while (request := decoder.next_request()) is not None:
            decoded.append(request)
    assert decoder.buffered == 0
    assert len(decoded) == 2
    for message in decoded:
        rebuilt = dataclasses.replace(message)  # runs __init__ and __post_init__
        assert type(message) is CmdSubmit
        assert type(message.direction) is Direction
        assert message == rebuilt == built
        assert hash(message) == hash(rebuilt)
        assert repr(message) == repr(rebuilt)
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.seqnum = 1  # type: ignore[misc]
