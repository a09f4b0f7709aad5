"""USB/IP's public names and error tree: a program that also uses vscard needs no alias."""

from __future__ import annotations

import pytest

import ccid.usbip
import vscard
from ccid.usbip import (
    Direction,
    USBIPClientConnection,
    USBIPError,
    USBIPLocalProtocolError,
    USBIPProtocolError,
    USBIPRemoteProtocolError,
    USBIPServerConnection,
)


def test_no_public_name_is_also_vscards() -> None:
    assert set(ccid.usbip.__all__).isdisjoint(vscard.__all__)


@pytest.mark.parametrize(
    "name",
    [
        "ProtocolError",
        "LocalProtocolError",
        "ConnectionClosedError",
        "Client",
        "Server",
        "ClientConnection",
        "ServerConnection",
        "serve",
        "encode",
    ],
)
def test_the_colliding_names_are_gone(name: str) -> None:
    # Nothing was released under them, so no deprecated alias is kept.
    assert not hasattr(ccid.usbip, name)


def test_the_adapters_load_under_their_usbip_names() -> None:
    assert ccid.usbip.USBIPServer.__name__ == "USBIPServer"
    assert ccid.usbip.USBIPClient.__name__ == "USBIPClient"
    assert callable(ccid.usbip.serve_usbip)


def test_protocol_errors_have_a_local_and_a_remote_side() -> None:
    assert issubclass(USBIPProtocolError, USBIPError)
    assert issubclass(USBIPRemoteProtocolError, USBIPProtocolError)
    assert issubclass(USBIPLocalProtocolError, USBIPProtocolError)
    assert not issubclass(USBIPLocalProtocolError, USBIPRemoteProtocolError)
    with pytest.raises(TypeError):
        USBIPProtocolError("abstract", field="x", value=1)


def test_a_peer_that_breaks_the_protocol_raises_a_remote_error_naming_field_and_value() -> None:
    conn = USBIPServerConnection()
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        conn.receive_data(b"\x01\x06\x80\x05\x00\x00\x00\x00")  # version 1.0.6, not 1.1.1
    assert caught.value.field == "op_common.version"
    assert caught.value.value == 0x0106


def test_a_call_the_state_forbids_raises_a_local_error_naming_the_state() -> None:
    conn = USBIPClientConnection()
    with pytest.raises(USBIPLocalProtocolError) as caught:
        conn.submit(1, Direction.IN, length=10)
    assert (caught.value.field, caught.value.value) == ("state", "IDLE")
    assert conn.data_to_send() == b""  # nothing was queued
