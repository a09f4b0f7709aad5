"""The host side answers a client the way QEMU's ccid-card-passthru does (QEMU's
``hw/usb/ccid-card-passthru.c``, ``ccid_card_vscard_handle_message``), and tracks readers,
cards and APDUs per reader."""

from __future__ import annotations

import pytest

from vscard import (
    APDU,
    ATR,
    APDUAborted,
    APDUFailed,
    APDUResponse,
    CardInserted,
    CardRemove,
    CardRemoved,
    Decoder,
    Error,
    ErrorCode,
    Flush,
    FlushComplete,
    FlushCompleted,
    HostConnection,
    Init,
    Message,
    NoCardError,
    PeerInit,
    ProtocolError,
    ReaderAdd,
    ReaderAdded,
    ReaderBusyError,
    ReaderRemove,
    ReaderRemoved,
    Unexpected,
    UnknownReaderError,
    encode,
)

ATR_BYTES = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


class Peer:
    """A client talking to a HostConnection, message by message."""

    def __init__(self, **options: int) -> None:
        self.host = HostConnection(**options)
        self.decoder = Decoder()

    def send(self, *messages: Message) -> tuple[list[object], list[Message]]:
        events = self.host.receive_data(b"".join(encode(m) for m in messages))
        return list(events), self.decoder.feed(self.host.data_to_send())


def test_init_is_answered_with_qemus_init() -> None:
    peer = Peer()
    events, replies = peer.send(Init(0))
    # QEMU's Init, with our Capability.CARD_RESET bit, which QEMU's clients ignore.
    assert replies == [Init(0xFFFFFFFF, 2, (0x8000_0000,))]
    assert events == [PeerInit(2, (0,))]


def test_reader_add_assigns_ids_from_zero_in_the_error_reply() -> None:
    peer = Peer()
    events, replies = peer.send(ReaderAdd(0, "one"), ReaderAdd(0, "two"))
    assert replies == [Error(0, ErrorCode.SUCCESS), Error(1, ErrorCode.SUCCESS)]
    assert events == [ReaderAdded(0, "one"), ReaderAdded(1, "two")]


def test_freed_reader_ids_are_reused_lowest_first() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ReaderAdd(), ReaderAdd())
    peer.send(ReaderRemove(1))
    _, replies = peer.send(ReaderAdd())
    assert replies == [Error(1, ErrorCode.SUCCESS)]


def test_too_many_readers_get_cannot_add_more_readers() -> None:
    peer = Peer(max_readers=2)
    peer.send(ReaderAdd(), ReaderAdd())
    events, replies = peer.send(ReaderAdd(0xFFFFFFFF, "third"))
    assert replies == [Error(0xFFFFFFFF, ErrorCode.CANNOT_ADD_MORE_READERS)]
    assert isinstance(events[0], Unexpected)


def test_reader_remove_of_an_unknown_reader_succeeds_as_vscclient_expects() -> None:
    peer = Peer()
    events, replies = peer.send(ReaderRemove(0))
    assert replies == [Error(0, ErrorCode.SUCCESS)]
    assert events == []


def test_atr_inserts_the_card_and_a_second_atr_is_a_reset() -> None:
    peer = Peer()
    peer.send(ReaderAdd())
    events, replies = peer.send(ATR(0, ATR_BYTES), ATR(0, ATR_BYTES))
    assert replies == [Error(0, ErrorCode.SUCCESS)] * 2
    assert events == [CardInserted(0, ATR_BYTES)] * 2
    assert peer.host.readers[0].atr == ATR_BYTES


@pytest.mark.parametrize("atr", ["3B", "3B02AA", "3B" + "00" * 40])
def test_bad_atr_gets_general_error_and_no_card(atr: str) -> None:
    peer = Peer()
    peer.send(ReaderAdd())
    events, replies = peer.send(ATR(0, bytes.fromhex(atr)))
    assert replies == [Error(0, ErrorCode.GENERAL_ERROR)]
    assert not peer.host.readers[0].card_present
    assert isinstance(events[0], Unexpected)


def test_atr_or_card_remove_for_a_reader_never_added_gets_general_error() -> None:
    peer = Peer()
    _, replies = peer.send(ATR(7, ATR_BYTES), CardRemove(7))
    assert replies == [Error(7, ErrorCode.GENERAL_ERROR)] * 2


def test_card_remove_succeeds_and_reports_removal_once() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    events, replies = peer.send(CardRemove(0), CardRemove(0))
    assert replies == [Error(0, ErrorCode.SUCCESS)] * 2
    assert events == [CardRemoved(0)]


def test_apdu_goes_to_the_card_and_its_response_comes_back_as_an_event() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    peer.host.send_apdu(0, bytes.fromhex("00A4040000"))
    assert peer.decoder.feed(peer.host.data_to_send()) == [APDU(0, bytes.fromhex("00A4040000"))]
    events, replies = peer.send(APDU(0, bytes.fromhex("9000")))
    assert events == [APDUResponse(0, bytes.fromhex("9000"))]
    assert replies == []  # QEMU does not answer an APDU


def test_apdu_failure_from_the_client_fails_that_apdu() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    peer.host.send_apdu(0, b"\x00\xb0\x00\x00\x00")
    peer.host.data_to_send()
    events, replies = peer.send(Error(0, 0x01000000))
    assert events == [APDUFailed(0, 0x01000000)]
    assert replies == []


def test_responses_are_matched_per_reader_not_fifo() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ReaderAdd(), ATR(0, ATR_BYTES), ATR(1, ATR_BYTES))
    peer.host.send_apdu(0, b"\x00\x00\x00\x00")
    peer.host.send_apdu(1, b"\x00\x00\x00\x01")
    peer.host.data_to_send()
    events, _ = peer.send(APDU(1, b"\x61\x01"), APDU(0, b"\x90\x00"))
    assert events == [APDUResponse(1, b"\x61\x01"), APDUResponse(0, b"\x90\x00")]


def test_a_response_nobody_asked_for_is_dropped_and_reported() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    events, replies = peer.send(APDU(0, b"\x90\x00"), Error(0, 1))
    assert [type(e) for e in events] == [Unexpected, Unexpected]
    assert replies == []


def test_card_removal_mid_apdu_aborts_it() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    peer.host.send_apdu(0, b"\x00\x00\x00\x00")
    events, _ = peer.send(CardRemove(0))
    assert events == [APDUAborted(0), CardRemoved(0)]


def test_reader_remove_with_a_card_reports_card_then_reader_gone() -> None:
    peer = Peer()
    peer.send(ReaderAdd(), ATR(0, ATR_BYTES))
    events, replies = peer.send(ReaderRemove(0))
    assert events == [CardRemoved(0), ReaderRemoved(0)]
    assert replies == [Error(0, ErrorCode.SUCCESS)]
    assert 0 not in peer.host.readers


def test_send_apdu_refuses_unknown_reader_empty_reader_and_a_second_apdu() -> None:
    peer = Peer()
    with pytest.raises(UnknownReaderError):
        peer.host.send_apdu(0, b"\x00\x00\x00\x00")
    peer.send(ReaderAdd())
    with pytest.raises(NoCardError):
        peer.host.send_apdu(0, b"\x00\x00\x00\x00")
    peer.send(ATR(0, ATR_BYTES))
    peer.host.send_apdu(0, b"\x00\x00\x00\x00")
    with pytest.raises(ReaderBusyError):
        peer.host.send_apdu(0, b"\x00\x00\x00\x00")


@pytest.mark.parametrize("message", [Flush(0), FlushComplete(0)])
def test_flush_messages_nobody_asked_for_get_general_error_like_qemu(message: Message) -> None:
    peer = Peer()
    _, replies = peer.send(message)
    assert replies == [Error(0, ErrorCode.GENERAL_ERROR)]


def test_host_flush_is_completed_by_the_client() -> None:
    peer = Peer()
    peer.send(ReaderAdd())
    peer.host.send_flush(0)
    assert peer.decoder.feed(peer.host.data_to_send()) == [Flush(0)]
    events, replies = peer.send(FlushComplete(0))
    assert events == [FlushCompleted(0)]
    assert replies == []


GARBAGE_HEADER = bytes.fromhex("000000FF 00000000 00000000")  # type 255: out of sync


def test_frames_before_a_bad_one_are_acted_on_and_the_error_is_kept() -> None:
    host = HostConnection()
    wire = encode(Init(0)) + encode(ReaderAdd(0, "r")) + GARBAGE_HEADER + encode(ReaderAdd(0, "s"))
    events = host.receive_data(wire)
    assert events == [PeerInit(2, (0,)), ReaderAdded(0, "r")]
    assert list(host.readers) == [0]
    # Their replies are queued too; the adapter may send them before it closes.
    assert Decoder().feed(host.data_to_send()) == [Init(0xFFFFFFFF, 2, (0x8000_0000,)), Error(0, 0)]
    error = host.error
    assert error is not None
    assert (error.field, error.value) == ("header.type", 0xFF)
    with pytest.raises(ProtocolError) as caught:
        host.receive_data(b"")
    assert caught.value is error
    assert list(host.readers) == [0]  # nothing after the bad frame was taken


def test_a_bad_frame_first_raises_at_once_and_stays_raised() -> None:
    host = HostConnection()
    with pytest.raises(ProtocolError) as caught:
        host.receive_data(bytes.fromhex("00000002 00000000 00000001 01") + encode(Init(0)))
    assert host.error is caught.value
    assert host.data_to_send() == b""
    with pytest.raises(ProtocolError) as again:
        host.receive_data(encode(Init(0)))
    assert again.value is caught.value
