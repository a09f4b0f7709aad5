"""One error tree, shaped like h11's: ``except vscard.ProtocolError`` catches both sides, each
error says whose fault it is, and each names the field and the value."""

from __future__ import annotations

import pytest

import vscard
from vscard import (
    ClientConnection,
    Decoder,
    HostConnection,
    LocalProtocolError,
    NoCardError,
    ProtocolError,
    ReaderBusyError,
    RemoteProtocolError,
    UnknownReaderError,
    VSCardError,
)
from vscard.client import MAX_PENDING_REQUESTS

#: What ``vscard.__all__`` exported before the tree had a Remote side: all must stay importable
#: (``Reader`` as a deprecated name of ``ClientReader``).
NAMES_BEFORE = {
    *("APDU", "ATR", "HEADER_SIZE", "MAX_ATR_SIZE", "MAX_FRAME_SIZE", "VSCARD_MAGIC"),
    *("VSCARD_MINIMAL_READER_ID", "VSCARD_UNDEFINED_READER_ID", "VSCARD_VERSION"),
    *("APDUAborted", "APDUFailed", "APDUFailedError", "APDUHandler", "APDURequest"),
    *("APDUResponse", "CardInserted", "CardRemove", "CardRemoved", "CardRemovedError"),
    *("Client", "ClientConnection", "ClientEvent", "ConnectionClosedError", "Decoder"),
    *("Error", "ErrorCode", "Flush", "FlushComplete", "FlushCompleted", "FlushRequested"),
    *("HostConnection", "HostEvent", "HostReader", "Init", "LocalProtocolError", "Message"),
    *("MessageType", "NoCardError", "PeerInit", "ProtocolError", "Reader", "ReaderAdd"),
    *("ReaderAdded", "ReaderBusyError", "ReaderRemove", "ReaderRemoved", "RequestAnswered"),
    *("RequestRefusedError", "Server", "Session", "SessionHandler", "Unexpected"),
    *("UnknownReaderError", "VSCardError", "atr_problem", "connect", "encode", "serve"),
}
GARBAGE_HEADER = bytes.fromhex("000000FF 00000000 00000000")


def test_every_public_name_is_still_exported_and_importable() -> None:
    assert set(vscard.__all__) >= NAMES_BEFORE - {"Reader"}
    assert {"RemoteProtocolError", "ClientReader"} <= set(vscard.__all__)
    with pytest.warns(DeprecationWarning, match="vscard.Reader is deprecated"):
        assert vscard.Reader is vscard.ClientReader
    for name in vscard.__all__:
        assert getattr(vscard, name) is not None


def test_both_sides_are_protocol_errors_and_only_the_misuse_errors_are_local() -> None:
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(ProtocolError, VSCardError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    for misuse in (UnknownReaderError, NoCardError, ReaderBusyError):
        assert issubclass(misuse, LocalProtocolError)
    for outcome in (
        vscard.RequestRefusedError,
        vscard.APDUFailedError,
        vscard.CardRemovedError,
        vscard.ConnectionClosedError,
    ):
        assert issubclass(outcome, VSCardError)
        assert not issubclass(outcome, ProtocolError)


def test_protocol_error_is_abstract_as_in_h11() -> None:
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("x", field="f", value=1)


def test_bad_bytes_from_the_peer_raise_a_remote_error_caught_as_protocol_error() -> None:
    for receive in (Decoder().feed, HostConnection().receive_data, ClientConnection().receive_data):
        with pytest.raises(ProtocolError) as caught:
            receive(GARBAGE_HEADER)
        assert isinstance(caught.value, RemoteProtocolError)
        assert (caught.value.field, caught.value.value) == ("header.type", 0xFF)
        assert str(caught.value) == "unknown message type: header.type=0x000000FF"


def test_a_host_asking_for_a_reader_it_does_not_have_gets_a_local_error() -> None:
    host = HostConnection()
    with pytest.raises(LocalProtocolError) as caught:
        host.send_apdu(3, b"\x00\xa4\x04\x00")
    error = caught.value
    assert isinstance(error, UnknownReaderError)
    assert (error.field, error.value, error.reader_id) == ("reader_id", 3, 3)
    assert str(error) == "no such reader: reader_id=0x00000003"
    assert host.data_to_send() == b""  # nothing went out, and the connection goes on
    assert host.error is None


def test_each_misuse_error_names_the_reader() -> None:
    for error, reason in (
        (NoCardError(2), "no card in the reader"),
        (ReaderBusyError(2), "an APDU is already in flight"),
    ):
        assert (error.reason, error.field, error.value, error.reader_id) == (
            reason,
            "reader_id",
            2,
            2,
        )
        assert str(error) == f"{reason}: reader_id=0x00000002"


def test_a_client_past_its_pending_requests_gets_a_local_error_naming_the_count() -> None:
    conn = ClientConnection()
    for _ in range(MAX_PENDING_REQUESTS):
        conn.add_reader()
    conn.data_to_send()
    with pytest.raises(LocalProtocolError) as caught:
        conn.add_reader()
    assert (caught.value.field, caught.value.value) == ("pending_requests", MAX_PENDING_REQUESTS)
    assert conn.data_to_send() == b""
    assert conn.error is None
