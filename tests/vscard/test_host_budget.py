"""A hostile client cannot keep the host busy for free: a violation budget ends a connection that
keeps breaking the protocol, and frames are handled a bounded batch per call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vscard import (
    APDU,
    ATR,
    APDUAborted,
    APDUResponse,
    CardInserted,
    CardRemove,
    CardRemoved,
    Decoder,
    Error,
    ErrorCode,
    HostConnection,
    Init,
    Message,
    PeerInit,
    ProtocolError,
    ReaderAdd,
    ReaderAdded,
    ReaderRemove,
    Unexpected,
    encode,
)

ATR_BYTES = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


def wire(*messages: Message) -> bytes:
    return b"".join(encode(m) for m in messages)


def with_card(**options: int) -> HostConnection:
    host = HostConnection(**options)
    host.receive_data(wire(Init(), ReaderAdd(name="r"), ATR(0, ATR_BYTES)))
    host.data_to_send()
    return host


def test_frames_for_a_reader_never_added_end_the_connection_past_the_budget() -> None:
    host = HostConnection(max_violations=3)
    events = host.receive_data(wire(Init(), *[ATR(7, ATR_BYTES)] * 4, ReaderAdd()))
    # The first three are reported (and answered, as QEMU would); the fourth ends it all.
    assert events[0] == PeerInit(2, (0,))
    assert [type(e) for e in events[1:]] == [Unexpected] * 3
    error = host.error
    assert isinstance(error, ProtocolError)
    assert (error.field, error.value) == ("ATR.reader_id", 7)
    assert "max_violations=3" in str(error)
    with pytest.raises(ProtocolError) as raised:
        host.receive_data(wire(ReaderAdd()))
    assert raised.value is error


@pytest.mark.parametrize(
    ("message", "field", "value"),
    [
        (APDU(3, b"\x90\x00"), "APDU.reader_id", 3),
        (Error(3, 0), "Error.reader_id", 3),
        (CardRemove(3), "CardRemove.reader_id", 3),
        (ATR(0, b"\x3b"), "ATR.atr", b"\x3b"),
        (ReaderAdd(name="too many"), "readers", 1),
        (Init(), "Init.version", 2),
    ],
    ids=["apdu", "error", "card-remove", "bad-atr", "reader-add", "second-init"],
)
def test_each_kind_of_violation_counts_and_the_error_names_its_field(
    message: Message, field: str, value: object
) -> None:
    host = HostConnection(max_violations=0, max_readers=1)
    host.receive_data(wire(Init(), ReaderAdd(name="r")))
    with pytest.raises(ProtocolError) as raised:
        host.receive_data(encode(message))
    assert (raised.value.field, raised.value.value) == (field, value)


def test_answered_apdus_pay_violations_back_so_a_long_lived_client_never_runs_out() -> None:
    host = with_card(max_violations=2)
    for _ in range(100):  # two violations, then the card is used: forever
        assert [type(e) for e in host.receive_data(wire(CardRemove(9), CardRemove(9)))] == [
            Unexpected,
            Unexpected,
        ]
        for _ in range(2):
            host.send_apdu(0, b"\x00\xca\x00\x00")
            assert host.receive_data(encode(APDU(0, b"\x90\x00"))) == [APDUResponse(0, b"\x90\x00")]
        assert host.violations == 0
    # Three in a row with nothing paid back: over (the two within budget are still reported).
    assert len(host.receive_data(wire(CardRemove(9), CardRemove(9), CardRemove(9)))) == 2
    assert isinstance(host.error, ProtocolError)


@pytest.mark.parametrize(
    "abort", [CardRemove(0), ATR(0, ATR_BYTES), ReaderRemove(0)], ids=["removal", "reset", "gone"]
)
@pytest.mark.parametrize("answer", [APDU(0, b"\x6f\x00"), Error(0, 1)], ids=["response", "error"])
def test_the_answer_to_an_apdu_its_own_client_aborted_is_dropped_quietly(
    abort: Message, answer: Message
) -> None:
    # The client's card left mid-APDU: its CardRemove can cross its answer on the wire.
    host = with_card(max_violations=0)
    host.send_apdu(0, b"\x00\xb0\x00\x00")
    events = host.receive_data(encode(abort))
    assert events[0] == APDUAborted(0)
    assert host.receive_data(encode(answer)) == []
    assert host.error is None
    # Only that one answer: a second is a violation again.
    with pytest.raises(ProtocolError):
        host.receive_data(encode(answer))


def test_a_call_handles_at_most_max_messages_frames_and_keeps_the_rest() -> None:
    host = HostConnection(max_messages=2)
    data = wire(Init(), ReaderAdd(name="a"), ReaderAdd(name="b"), ATR(1, ATR_BYTES), ReaderAdd())
    batches = [host.receive_data(data)]
    replies = [Decoder().feed(host.data_to_send())]
    while host.pending:
        assert host.buffered > 0
        batches.append(host.receive_data(b""))
        replies.append(Decoder().feed(host.data_to_send()))
    assert batches == [
        [PeerInit(2, (0,)), ReaderAdded(0, "a")],
        [ReaderAdded(1, "b"), CardInserted(1, ATR_BYTES)],
        [ReaderAdded(2, "")],
    ]
    # Each batch's replies are queued with it, not before.
    assert replies == [
        [Init(capabilities=(0x8000_0000,)), Error(0, ErrorCode.SUCCESS)],
        [Error(1, ErrorCode.SUCCESS)] * 2,
        [Error(2, ErrorCode.SUCCESS)],
    ]
    assert host.buffered == 0


def test_a_bad_frame_behind_the_batch_surfaces_when_its_turn_comes() -> None:
    host = HostConnection(max_messages=1)
    assert host.receive_data(wire(Init(), ReaderAdd()) + bytes(12)) == [PeerInit(2, (0,))]
    assert host.error is None
    assert host.receive_data(b"") == [ReaderAdded(0, "")]
    with pytest.raises(ProtocolError) as raised:
        host.receive_data(b"")
    assert raised.value.field == "header.type"


FRAMES = st.lists(
    st.one_of(
        st.builds(APDU, st.integers(0, 3), st.binary(max_size=20)),
        st.builds(ReaderRemove, st.integers(0, 3)),
        st.builds(ReaderAdd, st.integers(0, 3), st.text(max_size=5)),
        st.builds(CardRemove, st.integers(0, 3)),
    ),
    max_size=40,
).map(lambda messages: [Init(), *messages])


@given(FRAMES, st.integers(1, 7), st.lists(st.integers(1, 64), max_size=10))
def test_batches_and_splits_change_nothing_but_when_events_come(
    messages: list[Message], limit: int, cuts: list[int]
) -> None:
    data = wire(*messages)
    whole = HostConnection(max_violations=1000)
    expected = whole.receive_data(data)
    expected_replies = whole.data_to_send()
    batched = HostConnection(max_violations=1000, max_messages=limit)
    events: list[object] = []
    at = 0
    for cut in [*cuts, len(data)]:
        events += batched.receive_data(data[at : at + cut])
        at += cut
        while batched.pending:
            events += batched.receive_data(b"")
    assert events == expected
    assert batched.data_to_send() == expected_replies


def test_a_decoder_without_a_limit_still_returns_every_frame_at_once() -> None:
    decoder = Decoder()
    assert len(decoder.feed(encode(ReaderRemove(0)) * 10_000)) == 10_000
    assert not decoder.pending
    with pytest.raises(ValueError, match="max_messages=0"):
        Decoder(max_messages=0)


def test_card_removed_is_still_reported_when_the_budget_is_zero() -> None:
    host = with_card(max_violations=0)
    assert host.receive_data(encode(CardRemove(0))) == [CardRemoved(0)]
