"""The wire format: each message's bytes, QEMU's golden frames, and a decoder that never
trusts its peer."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vscard
from vscard import (
    APDU,
    ATR,
    CardRemove,
    Decoder,
    Error,
    ErrorCode,
    Flush,
    FlushComplete,
    Init,
    ProtocolError,
    ReaderAdd,
    ReaderRemove,
    encode,
)

# Captured from qemu-system-x86_64 7.2.22 (Debian 12): its Init, and the Error replies it
# sends to a ReaderAdd (always reader 0) and to a bad ATR on reader 5.
QEMU_INIT = bytes.fromhex("00000001 FFFFFFFF 0000000C 56534344 00000002 00000000")
QEMU_READER_ADD_REPLY = bytes.fromhex("00000002 00000000 00000004 00000000")
QEMU_BAD_ATR_REPLY = bytes.fromhex("00000002 00000005 00000004 00000001")


EXAMPLES = [
    (Init(), QEMU_INIT),
    (
        Init(0, 2, (0, 7)),
        bytes.fromhex("00000001 00000000 00000010 56534344 00000002 00000000 00000007"),
    ),
    (Error(0, ErrorCode.SUCCESS), QEMU_READER_ADD_REPLY),
    (Error(5, ErrorCode.GENERAL_ERROR), QEMU_BAD_ATR_REPLY),
    (
        ReaderAdd(0xFFFFFFFF, "Virtual Reader"),
        bytes.fromhex("00000003 FFFFFFFF 0000000E") + b"Virtual Reader",
    ),
    (ReaderAdd(0, ""), bytes.fromhex("00000003 00000000 00000000")),
    (ReaderRemove(1), bytes.fromhex("00000004 00000001 00000000")),
    (ATR(0, bytes.fromhex("3B00")), bytes.fromhex("00000005 00000000 00000002 3B00")),
    (CardRemove(2), bytes.fromhex("00000006 00000002 00000000")),
    (APDU(0, bytes.fromhex("00A4040000")), bytes.fromhex("00000007 00000000 00000005 00A4040000")),
    (Flush(3), bytes.fromhex("00000008 00000003 00000000")),
    (FlushComplete(3), bytes.fromhex("00000009 00000003 00000000")),
]


@pytest.mark.parametrize(("message", "wire"), EXAMPLES, ids=lambda v: type(v).__name__)
def test_every_message_type_encodes_to_its_wire_bytes_and_back(
    message: vscard.Message, wire: bytes
) -> None:
    assert encode(message) == wire
    assert Decoder().feed(wire) == [message]


def test_qemu_init_decodes_to_version_2_with_one_zero_capability() -> None:
    assert Decoder().feed(QEMU_INIT) == [Init(0xFFFFFFFF, 2, (0,))]


def test_vscclient_apdu_failure_in_host_byte_order_is_kept_as_a_raw_code() -> None:
    # libcacard's vscclient writes its APDU failure code 1 without htonl.
    (message,) = Decoder().feed(bytes.fromhex("00000002 00000000 00000004 01000000"))
    assert message == Error(0, 0x01000000)


def test_known_error_codes_decode_to_the_enum() -> None:
    (message,) = Decoder().feed(bytes.fromhex("00000002 00000000 00000004 00000002"))
    assert isinstance(message, Error)
    assert message.code is ErrorCode.CANNOT_ADD_MORE_READERS


def test_reader_name_sent_as_a_c_string_loses_its_nul() -> None:
    (message,) = Decoder().feed(bytes.fromhex("00000003 00000000 00000004") + b"abc\0")
    assert message == ReaderAdd(0, "abc")


def test_reader_name_that_is_not_utf8_is_replaced_not_fatal() -> None:
    (message,) = Decoder().feed(bytes.fromhex("00000003 00000000 00000002 FFFE"))
    assert message == ReaderAdd(0, "\ufffd\ufffd")


def test_init_with_extra_capability_words_is_accepted() -> None:
    wire = bytes.fromhex("00000001 FFFFFFFF 00000014 56534344 00000002 00000000 00000001 00000002")
    assert Decoder().feed(wire) == [Init(0xFFFFFFFF, 2, (0, 1, 2))]


# -- malformed input: typed errors naming the field and the value ---------------------------


@pytest.mark.parametrize(
    ("wire", "field", "value"),
    [
        (bytes.fromhex("0000000A 00000000 00000000"), "header.type", 10),
        (bytes.fromhex("00000000 00000000 00000000"), "header.type", 0),
        (bytes.fromhex("00000007 00000000 FFFFFFFF"), "header.length", 0xFFFFFFFF),
        (bytes.fromhex("00000007 00000000 0000FFF5"), "header.length", 0xFFF5),
        (bytes.fromhex("00000002 00000000 00000002 0000"), "Error.length", 2),
        (bytes.fromhex("00000004 00000000 00000001 00"), "ReaderRemove.length", 1),
        (bytes.fromhex("00000001 FFFFFFFF 00000004 56534344"), "Init.length", 4),
        (
            bytes.fromhex("00000001 FFFFFFFF 0000000D 56534344 00000002 00000000 00"),
            "Init.length",
            13,
        ),
        (
            bytes.fromhex("00000001 FFFFFFFF 0000000C 58585858 00000002 00000000"),
            "Init.magic",
            b"XXXX",
        ),
    ],
)
def test_malformed_frame_raises_protocol_error_naming_field_and_value(
    wire: bytes, field: str, value: object
) -> None:
    with pytest.raises(ProtocolError) as caught:
        Decoder().feed(wire)
    assert caught.value.field == field
    assert caught.value.value == value
    assert field in str(caught.value)


def test_error_message_shows_the_value_readably() -> None:
    with pytest.raises(ProtocolError, match=r"header\.type=0x0000000A"):
        Decoder().feed(bytes.fromhex("0000000A 00000000 00000000"))
    with pytest.raises(ProtocolError, match=r"Init\.magic=58 58 58 58"):
        Decoder().feed(bytes.fromhex("00000001 FFFFFFFF 0000000C 58585858 00000002 00000000"))


def test_oversized_frame_is_refused_from_its_header_without_buffering_the_payload() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(bytes.fromhex("00000007 00000000 00010000"))
    assert decoder.buffered == 0


def test_the_largest_frame_qemu_accepts_passes_and_one_byte_more_does_not() -> None:
    biggest = APDU(0, bytes(65536 - 12))
    assert Decoder().feed(encode(biggest)) == [biggest]
    with pytest.raises(ValueError, match="max_frame_size"):
        encode(APDU(0, bytes(65536 - 11)))


def test_max_frame_size_is_configurable_both_ways() -> None:
    frame = encode(APDU(0, bytes(100_000)), max_frame_size=200_000)
    assert len(Decoder(max_frame_size=200_000).feed(frame)) == 1
    with pytest.raises(ProtocolError, match=r"max_frame_size=1000"):
        Decoder(max_frame_size=1000).feed(encode(APDU(0, bytes(989))))


def test_decoder_stays_failed_after_a_protocol_error() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError):
        decoder.feed(bytes.fromhex("0000000A 00000000 00000000"))
    with pytest.raises(ProtocolError):
        decoder.feed(encode(Init()))


def test_messages_refuse_values_that_do_not_fit_the_wire() -> None:
    with pytest.raises(ValueError, match="reader_id"):
        APDU(-1, b"")
    with pytest.raises(ValueError, match="reader_id"):
        CardRemove(1 << 32)
    with pytest.raises(ValueError, match="capabilities"):
        Init(capabilities=())
    with pytest.raises(ValueError, match="code"):
        Error(0, 1 << 32)


# -- properties -----------------------------------------------------------------------------

u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=300)
messages = st.one_of(
    st.builds(Init, u32, u32, st.lists(u32, min_size=1, max_size=4).map(tuple)),
    st.builds(Error, u32, u32),
    st.builds(ReaderAdd, u32, st.text(max_size=40).filter(lambda s: "\0" not in s)),
    st.builds(ReaderRemove, u32),
    st.builds(ATR, u32, small_bytes),
    st.builds(CardRemove, u32),
    st.builds(APDU, u32, small_bytes),
    st.builds(Flush, u32),
    st.builds(FlushComplete, u32),
)


@given(messages)
def test_decode_of_encode_is_identity(message: vscard.Message) -> None:
    assert Decoder().feed(encode(message)) == [message]


@given(st.lists(messages, max_size=12), st.lists(st.integers(0, 4000), max_size=12))
def test_a_stream_cut_at_arbitrary_points_decodes_to_the_same_messages(
    sent: list[vscard.Message], cuts: list[int]
) -> None:
    stream = b"".join(encode(m) for m in sent)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = Decoder()
    received: list[vscard.Message] = []
    for start, end in itertools.pairwise(points):
        received += decoder.feed(memoryview(stream)[start:end])
        assert decoder.buffered < vscard.MAX_FRAME_SIZE
    assert received == sent
    assert decoder.buffered == 0


@given(st.binary(max_size=2000), st.integers(1, 64))
def test_arbitrary_bytes_yield_messages_or_protocol_error_and_stay_bounded(
    garbage: bytes, chunk: int
) -> None:
    decoder = Decoder(max_frame_size=1024)
    failure: ProtocolError | None = None
    for start in range(0, len(garbage), chunk):
        try:
            decoder.feed(garbage[start : start + chunk])
        except ProtocolError as error:
            failure = error
            break
        assert decoder.buffered < 1024
    assert failure is None or failure.field


# -- frames before a bad one; the decoder's own APDU construction ----------------------------


def test_good_frames_before_a_bad_one_are_returned_and_the_next_feed_raises() -> None:
    good: list[vscard.Message] = [APDU(0, b"\x90\x00"), Error(0, 0), APDU(1, b"")]
    bad = bytes.fromhex("0000000A 00000000 00000000")
    decoder = Decoder()
    assert decoder.feed(b"".join(encode(m) for m in good) + bad + encode(Init())) == good
    assert decoder.buffered == 0
    error = decoder.error
    assert error is not None
    assert (error.field, error.value) == ("header.type", 10)
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(b"")
    assert caught.value is error
    with pytest.raises(ProtocolError) as again:  # sticky, as before
        decoder.feed(encode(Init()))
    assert again.value is error


def test_good_frames_completed_by_a_feed_that_meets_a_bad_header_are_returned() -> None:
    decoder = Decoder(max_frame_size=1024)
    wire = encode(APDU(3, bytes(20)))
    assert decoder.feed(wire[:5]) == []
    # The rest of the APDU, then a header announcing more than max_frame_size.
    assert decoder.feed(wire[5:] + bytes.fromhex("00000007 00000000 00001000")) == [
        APDU(3, bytes(20))
    ]
    with pytest.raises(ProtocolError, match=r"header\.length"):
        decoder.feed(b"")


def test_a_bad_frame_with_nothing_good_before_it_raises_at_once() -> None:
    decoder = Decoder()
    assert decoder.error is None
    with pytest.raises(ProtocolError) as caught:
        decoder.feed(bytes.fromhex("00000002 00000000 00000002 0000"))
    assert decoder.error is caught.value


@given(st.lists(messages, min_size=1, max_size=8), st.integers(1, 64))
def test_decoded_messages_are_the_ones_their_constructors_build(
    sent: list[vscard.Message], chunk: int
) -> None:
    # APDUs are built without APDU.__init__: they must still pass its checks and compare,
    # hash and print like constructed ones, whichever path (one frame, many, split) built them.
    stream = b"".join(encode(m) for m in sent)
    decoder = Decoder()
    received: list[vscard.Message] = []
    for start in range(0, len(stream), chunk):
        received += decoder.feed(stream[start : start + chunk])
    received += [m for frame in map(encode, sent) for m in Decoder().feed(frame)]
    for message, original in zip(received, sent + sent, strict=True):
        rebuilt = dataclasses.replace(message)  # runs __init__ and __post_init__
        assert type(message) is type(original)
        assert message == rebuilt == original
        assert hash(message) == hash(rebuilt)
        assert repr(message) == repr(rebuilt)
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.reader_id = 1  # type: ignore[misc]
