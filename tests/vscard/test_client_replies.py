"""The card side answers by itself what no application could: an APDU or a Flush for a reader
that does not exist. Every such reply is visible here, byte for byte; the card state it keeps
(from the host's replies) is what a Reader shows."""

from __future__ import annotations

import dataclasses

from vscard import (
    APDU,
    ATR,
    APDURequest,
    ClientConnection,
    Error,
    ErrorCode,
    Flush,
    FlushComplete,
    FlushRequested,
    ReaderAdd,
    ReaderRemove,
    RequestAnswered,
    Unexpected,
    encode,
)

CARD_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")
SELECT = bytes.fromhex("00A4040007A0000000790100")
OK = encode(Error(0, ErrorCode.SUCCESS))


def reader_with_card() -> ClientConnection:
    """A connection whose host accepted reader 0 and the card in it."""
    conn = ClientConnection()
    conn.add_reader("r")
    conn.insert_card(0, CARD_ATR)
    conn.receive_data(OK + OK)
    conn.data_to_send()
    return conn


def test_an_apdu_for_a_reader_never_added_is_failed_with_general_error() -> None:
    conn = ClientConnection()
    events = conn.receive_data(encode(APDU(7, SELECT)))
    assert events == [Unexpected(APDU(7, SELECT), "no such reader")]
    # The same bytes the asyncio client sent before the connection decided it.
    assert conn.data_to_send() == encode(Error(7, ErrorCode.GENERAL_ERROR))


def test_a_flush_for_a_reader_never_added_is_completed_at_once() -> None:
    conn = ClientConnection()
    events = conn.receive_data(encode(Flush(7)))
    assert events == [Unexpected(Flush(7), "no such reader")]
    assert conn.data_to_send() == encode(FlushComplete(7))


def test_an_apdu_for_a_reader_without_a_card_still_goes_to_the_application() -> None:
    # QEMU keeps a card across reconnects: after connect(reset=False) the application serves
    # it without a new ATR, so only the application can say whether a card is there.
    conn = ClientConnection()
    conn.add_reader("r")
    conn.receive_data(OK)
    conn.data_to_send()
    assert conn.cards == {}
    events = conn.receive_data(encode(APDU(0, SELECT)) + encode(Flush(0)))
    assert events == [APDURequest(0, SELECT), FlushRequested(0)]
    assert conn.data_to_send() == b""


def test_a_card_counts_from_the_hosts_reply_to_its_atr_until_its_removal() -> None:
    conn = ClientConnection()
    conn.add_reader("r")
    conn.receive_data(OK)
    conn.insert_card(0, CARD_ATR)
    assert conn.cards == {}
    conn.receive_data(OK)
    assert conn.cards == {0: CARD_ATR}
    conn.remove_card(0)
    assert conn.cards == {0: CARD_ATR}
    conn.receive_data(OK)
    assert conn.cards == {}


def test_a_refused_atr_inserts_nothing_and_a_refused_reset_keeps_the_card() -> None:
    conn = ClientConnection()
    conn.add_reader("r")
    conn.insert_card(0, b"\x3b\x02\xaa")
    conn.receive_data(OK + encode(Error(0, ErrorCode.GENERAL_ERROR)))
    assert conn.cards == {}
    conn.insert_card(0, CARD_ATR)
    conn.insert_card(0, b"\x3b\x02\xaa")
    conn.receive_data(OK + encode(Error(0, ErrorCode.GENERAL_ERROR)))
    assert conn.cards == {0: CARD_ATR}


def test_apdus_after_the_reader_is_removed_are_failed() -> None:
    conn = reader_with_card()
    conn.remove_reader(0)
    # Sent by the host before it read our ReaderRemove: still the reader's.
    assert conn.receive_data(encode(APDU(0, SELECT))) == [APDURequest(0, SELECT)]
    conn.receive_data(OK)
    events = conn.receive_data(encode(APDU(0, SELECT)) + encode(Flush(0)))
    assert events == [
        Unexpected(APDU(0, SELECT), "no such reader"),
        Unexpected(Flush(0), "no such reader"),
    ]
    assert conn.data_to_send() == b"".join(
        [
            encode(ReaderRemove(0)),
            encode(Error(0, ErrorCode.GENERAL_ERROR)),
            encode(FlushComplete(0)),
        ]
    )


def test_removing_a_reader_takes_its_card() -> None:
    conn = reader_with_card()
    conn.remove_reader(0)
    conn.receive_data(OK)
    assert conn.cards == {}
    assert conn.reader_ids == frozenset()


def test_an_atr_for_a_reader_the_host_never_gave_inserts_nothing() -> None:
    # QEMU accepts an ATR for any reader id; no reader of ours would serve that card.
    conn = ClientConnection()
    conn.insert_card(3, CARD_ATR)
    conn.receive_data(encode(Error(3, ErrorCode.SUCCESS)))
    assert conn.cards == {}
    assert [type(e) for e in conn.receive_data(encode(APDU(3, SELECT)))] == [Unexpected]
    assert conn.data_to_send() == encode(ATR(3, CARD_ATR)) + encode(
        Error(3, ErrorCode.GENERAL_ERROR)
    )


def test_a_one_reader_host_keeps_the_card_of_its_one_reader() -> None:
    conn = reader_with_card()
    conn.add_reader("token")
    conn.receive_data(OK)  # QEMU: the same reader 0 again
    assert conn.one_reader_host
    assert conn.cards == {0: CARD_ATR}
    assert conn.receive_data(encode(APDU(0, SELECT))) == [APDURequest(0, SELECT)]


def test_the_application_answers_what_a_card_gets_and_nothing_else_is_sent() -> None:
    conn = reader_with_card()
    events = conn.receive_data(encode(APDU(0, SELECT)) + encode(Flush(0)))
    assert events == [APDURequest(0, SELECT), FlushRequested(0)]
    assert conn.data_to_send() == b""
    conn.send_response(0, b"\x90\x00")
    conn.send_flush_complete(0)
    assert conn.data_to_send() == encode(APDU(0, b"\x90\x00")) + encode(FlushComplete(0))


def test_requests_in_flight_are_unaffected_by_answers_the_connection_sends() -> None:
    conn = ClientConnection()
    conn.add_reader("r")
    conn.data_to_send()
    conn.receive_data(encode(APDU(0, SELECT)))  # answered here, no reply consumed
    assert conn.pending_requests == 1
    assert conn.receive_data(OK) == [RequestAnswered(ReaderAdd(0xFFFFFFFF, "r"), 0, 0)]
    assert conn.reader_ids == {0}


def test_an_apdu_request_is_an_ordinary_event() -> None:
    # Built on the per-APDU path without its __init__: the same value all the same.
    conn = reader_with_card()
    (event,) = conn.receive_data(encode(APDU(0, SELECT)))
    assert event == APDURequest(0, SELECT)
    assert hash(event) == hash(APDURequest(0, SELECT))
    assert dataclasses.replace(event) == event
