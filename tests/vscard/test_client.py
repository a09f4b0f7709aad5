"""The card side pairs the host's id-less replies with its requests, in order."""

from __future__ import annotations

import pytest

from vscard import (
    APDU,
    ATR,
    APDURequest,
    ClientConnection,
    Decoder,
    Error,
    ErrorCode,
    Flush,
    FlushRequested,
    Init,
    Message,
    PeerInit,
    ProtocolError,
    ReaderAdd,
    ReaderRemove,
    RequestAnswered,
    Unexpected,
    encode,
)


def sent(conn: ClientConnection) -> list[Message]:
    return Decoder().feed(conn.data_to_send())


def test_init_goes_out_first_and_the_hosts_init_is_reported() -> None:
    conn = ClientConnection()
    conn.send_init()
    assert sent(conn) == [Init(0xFFFFFFFF, 2, (0,))]
    assert conn.receive_data(encode(Init())) == [PeerInit(2, (0,))]
    assert conn.peer_version == 2
    assert not conn.card_reset  # a QEMU-like host announced nothing


def test_each_error_reply_answers_the_oldest_request() -> None:
    conn = ClientConnection()
    conn.remove_reader(0)
    conn.add_reader("Virtual Reader")
    assert sent(conn) == [ReaderRemove(0), ReaderAdd(0xFFFFFFFF, "Virtual Reader")]
    events = conn.receive_data(encode(Error(0, 0)) + encode(Error(3, 0)))
    assert events == [
        RequestAnswered(ReaderRemove(0), 0, ErrorCode.SUCCESS),
        RequestAnswered(ReaderAdd(0xFFFFFFFF, "Virtual Reader"), 3, ErrorCode.SUCCESS),
    ]
    assert conn.pending_requests == 0


def test_refusal_code_is_reported_with_its_request() -> None:
    conn = ClientConnection()
    conn.insert_card(0, b"\x3b")
    (event,) = conn.receive_data(encode(Error(0, ErrorCode.GENERAL_ERROR)))
    assert event == RequestAnswered(ATR(0, b"\x3b"), 0, ErrorCode.GENERAL_ERROR)


def test_host_apdu_and_flush_for_a_reader_become_requests_for_the_application() -> None:
    conn = ClientConnection()
    conn.add_reader("r")
    conn.receive_data(encode(Error(0, 0)))
    conn.data_to_send()
    events = conn.receive_data(encode(APDU(0, b"\x00\xa4\x04\x00")) + encode(Flush(0)))
    assert events == [APDURequest(0, b"\x00\xa4\x04\x00"), FlushRequested(0)]
    assert conn.data_to_send() == b""  # the application answers these


def test_reply_without_request_and_client_only_messages_are_unexpected() -> None:
    conn = ClientConnection()
    events = conn.receive_data(encode(Error(0, 0)) + encode(ReaderAdd(0, "x")))
    assert [type(e) for e in events] == [Unexpected, Unexpected]


def test_responses_and_failures_need_no_reply() -> None:
    conn = ClientConnection()
    conn.send_response(0, b"\x90\x00")
    conn.send_failure(0)
    conn.send_flush_complete(0)
    assert [type(m).__name__ for m in sent(conn)] == ["APDU", "Error", "FlushComplete"]
    assert conn.pending_requests == 0


GARBAGE_HEADER = bytes.fromhex("000000FF 00000000 00000000")  # type 255: out of sync


def test_events_before_a_bad_frame_come_first_and_the_error_is_kept() -> None:
    conn = ClientConnection()
    conn.add_reader("r")
    conn.data_to_send()
    events = conn.receive_data(encode(Error(0, 0)) + encode(APDU(0, b"\x00\xb0")) + GARBAGE_HEADER)
    assert events == [
        RequestAnswered(ReaderAdd(0xFFFFFFFF, "r"), 0, ErrorCode.SUCCESS),
        APDURequest(0, b"\x00\xb0"),
    ]
    error = conn.error
    assert error is not None
    assert (error.field, error.value) == ("header.type", 0xFF)
    with pytest.raises(ProtocolError) as caught:  # and every later call, even with nothing new
        conn.receive_data(b"")
    assert caught.value is error
    with pytest.raises(ProtocolError):
        conn.receive_data(encode(Init()))


def test_a_bad_frame_with_nothing_good_before_it_raises_at_once() -> None:
    conn = ClientConnection()
    assert conn.error is None
    with pytest.raises(ProtocolError) as caught:
        conn.receive_data(GARBAGE_HEADER + encode(Init()))
    assert conn.error is caught.value
