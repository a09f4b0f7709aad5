"""Our CardReset extension: announced in Init, used only when both sides announced it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

import vscard
from vscard import (
    APDU,
    ATR,
    Capability,
    CardProtocol,
    CardReset,
    CardResetRequested,
    ClientConnection,
    Decoder,
    HostConnection,
    Init,
    LocalProtocolError,
    MessageType,
    PeerInit,
    ProtocolChanged,
    ReaderAdd,
    RemoteProtocolError,
    TransmissionProtocol,
    Unexpected,
    encode,
)
from vscard.events import APDURequest

CARD_ATR = bytes.fromhex("3B 80 81 31 FE 45 8B")
SELECT = bytes.fromhex("00 A4 04 00 07 A0 00 00 00 79 01 00 00")
RESET = Capability.CARD_RESET


def test_the_capability_and_the_types_sit_at_the_top_bit() -> None:
    assert int(Capability.CARD_RESET) == 0x8000_0000
    assert int(MessageType.CARD_RESET) == 0x8000_0001
    assert int(MessageType.CARD_PROTOCOL) == 0x8000_0002
    assert encode(CardReset(3, TransmissionProtocol.T1)) == bytes.fromhex(
        "80000001 00000003 00000004 00000001"
    )
    assert encode(CardProtocol(0, 0)) == bytes.fromhex("80000002 00000000 00000004 00000000")


@given(
    st.integers(0, 0xFFFFFFFF),
    st.sampled_from(list(TransmissionProtocol)),
    st.sampled_from([CardReset, CardProtocol]),
)
def test_extension_messages_round_trip(
    reader_id: int, protocol: TransmissionProtocol, kind: type[CardReset] | type[CardProtocol]
) -> None:
    message = kind(reader_id, protocol)
    assert Decoder().feed(encode(message)) == [message]


@pytest.mark.parametrize(
    ("wire", "field", "value"),
    [
        ("80000001 00000000 00000004 00000002", "CardReset.protocol", 2),
        ("80000002 00000000 00000004 FFFFFFFF", "CardProtocol.protocol", 0xFFFFFFFF),
        ("80000001 00000000 00000000", "CardReset.length", 0),
        ("80000002 00000000 00000005 0000000100", "CardProtocol.length", 5),
    ],
)
def test_bad_extension_frames_name_the_field(wire: str, field: str, value: int) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        Decoder().feed(bytes.fromhex(wire))
    assert (caught.value.field, caught.value.value) == (field, value)


def test_messages_refuse_a_protocol_other_than_t0_or_t1() -> None:
    with pytest.raises(ValueError, match=r"CardReset\.protocol"):
        CardReset(0, 2)
    with pytest.raises(ValueError, match=r"CardProtocol\.protocol"):
        CardProtocol(0, -1)


def _pair(
    *,
    host_caps: Capability = Capability.CARD_RESET,
    client_caps: Capability = Capability.CARD_RESET,
) -> tuple[HostConnection, ClientConnection, list[object]]:
    """A host and a client through the handshake, a reader 0 with a card."""
    host = HostConnection(capabilities=host_caps)
    client = ClientConnection(capabilities=client_caps)
    client.send_init()
    client.add_reader("r")
    client.insert_card(0, CARD_ATR)
    host_events = host.receive_data(client.data_to_send())
    client_events = client.receive_data(host.data_to_send())
    return host, client, [*host_events, *client_events]


def test_a_bare_client_connection_announces_nothing_unless_asked() -> None:
    client = ClientConnection()
    client.send_init()
    assert Decoder().feed(client.data_to_send()) == [Init(capabilities=(0,))]


def test_both_sides_announce_and_record_the_peer() -> None:
    host, client, events = _pair()
    assert host.card_reset
    assert client.card_reset
    assert events[0] == PeerInit(2, (0x8000_0000,))
    assert host.peer_capabilities == client.peer_capabilities == Capability.CARD_RESET


def test_a_reset_reaches_the_client_in_order_with_the_apdus() -> None:
    host, client, _ = _pair()
    host.send_apdu(0, SELECT)
    host.send_card_reset(0, TransmissionProtocol.T1)
    host.receive_data(encode(APDU(0, b"\x90\x00")))
    host.send_card_protocol(0, TransmissionProtocol.T0)
    host.send_apdu(0, SELECT)
    assert client.receive_data(host.data_to_send()) == [
        APDURequest(0, SELECT),
        CardResetRequested(0, TransmissionProtocol.T1),
        ProtocolChanged(0, TransmissionProtocol.T0),
        APDURequest(0, SELECT),
    ]


@pytest.mark.parametrize(
    ("host_caps", "client_caps"),
    [(Capability(0), Capability.CARD_RESET), (Capability.CARD_RESET, Capability(0))],
)
def test_the_host_sends_nothing_new_unless_both_announced(
    host_caps: Capability, client_caps: Capability
) -> None:
    host, client, _ = _pair(host_caps=host_caps, client_caps=client_caps)
    assert not host.card_reset
    assert not client.card_reset
    with pytest.raises(LocalProtocolError) as caught:
        host.send_card_reset(0)
    assert caught.value.field == "capabilities"
    with pytest.raises(LocalProtocolError):
        host.send_card_protocol(0, 1)
    assert host.data_to_send() == b""


def test_a_qemu_like_client_gets_nothing_new() -> None:
    """libcacard's vscclient sends capabilities 0: the host never uses the extension."""
    host = HostConnection()
    host.receive_data(
        encode(Init(0, 2, (0,))) + encode(ReaderAdd(0, "")) + encode(ATR(0, CARD_ATR))
    )
    assert not host.card_reset
    with pytest.raises(LocalProtocolError):
        host.send_card_reset(0)


def test_a_reset_for_a_reader_without_a_card_is_refused_locally() -> None:
    host, client, _ = _pair()
    client.remove_card(0)
    host.receive_data(client.data_to_send())
    with pytest.raises(vscard.NoCardError):
        host.send_card_reset(0)
    with pytest.raises(vscard.UnknownReaderError):
        host.send_card_protocol(5, 1)


@pytest.mark.parametrize("message", [CardReset(0, 1), CardProtocol(0, 0)])
def test_a_client_that_did_not_announce_treats_the_message_as_a_violation(
    message: CardReset | CardProtocol,
) -> None:
    client = ClientConnection(capabilities=Capability(0))
    client.send_init()
    good = encode(Init(capabilities=(0x8000_0000,)))
    events = client.receive_data(good + encode(message) + encode(APDU(0, SELECT)))
    assert events == [PeerInit(2, (0x8000_0000,))]  # the frames before it are acted on first
    error = client.error
    assert error is not None
    assert (error.field, error.value) == ("header.type", message.TYPE)
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"")


def test_a_client_whose_host_did_not_announce_treats_the_message_as_a_violation() -> None:
    client = ClientConnection(capabilities=RESET)
    client.send_init()
    events = client.receive_data(encode(Init()) + encode(CardReset(0, 0)))
    assert events == [PeerInit(2, (0,))]
    assert client.error is not None
    assert client.error.field == "header.type"
    with pytest.raises(RemoteProtocolError):
        client.receive_data(b"")


def test_a_reset_for_a_reader_the_client_does_not_have_is_reported() -> None:
    client = ClientConnection(capabilities=RESET)
    client.send_init()
    events = client.receive_data(encode(Init(capabilities=(0x8000_0000,))) + encode(CardReset(9)))
    assert events[1] == Unexpected(CardReset(9), "no such reader")


def test_a_host_that_receives_the_message_without_announcing_fails() -> None:
    host = HostConnection(capabilities=Capability(0))
    host.receive_data(encode(Init(capabilities=(0x8000_0000,))))
    with pytest.raises(RemoteProtocolError) as caught:
        host.receive_data(encode(CardReset(0)))
    assert (caught.value.field, caught.value.value) == ("header.type", MessageType.CARD_RESET)


def test_a_host_that_announced_counts_a_clients_reset_as_a_violation() -> None:
    host = HostConnection()
    events = host.receive_data(encode(Init(capabilities=(0x8000_0000,))) + encode(CardReset(0)))
    assert isinstance(events[-1], Unexpected)
    assert host.violations == 1


# -- asyncio ---------------------------------------------------------------------------------


async def _session(
    handler_ready: asyncio.Future[vscard.Session], *, card_reset: bool = True
) -> tuple[vscard.Server, vscard.Client, vscard.Session]:
    # The host has the card from its reply to the ATR on: reader.insert's return.
    async def handler(session: vscard.Session) -> None:
        handler_ready.set_result(session)
        async for _ in session.events():
            pass

    server = await vscard.serve(handler, "127.0.0.1", 0)
    client = await vscard.connect("127.0.0.1", server.port, card_reset=card_reset)
    return server, client, await handler_ready


async def test_the_reset_handler_finishes_before_the_next_apdu() -> None:
    order: list[str] = []
    resetting = asyncio.Event()
    release = asyncio.Event()

    async def transmit(apdu: bytes) -> bytes:
        order.append("apdu")
        return b"\x90\x00"

    async def reset(protocol: int) -> None:
        resetting.set()
        await release.wait()  # a slow reset (SCardReconnect)
        order.append(f"reset T={protocol}")

    async def protocol(value: int) -> None:
        order.append(f"protocol T={value}")

    ready: asyncio.Future[vscard.Session] = asyncio.get_running_loop().create_future()
    server, client, session = await _session(ready)
    async with server, client:
        reader = await client.add_reader("r", transmit=transmit, reset=reset, protocol=protocol)
        await reader.insert(CARD_ATR)
        assert session.card_reset
        assert client.card_reset
        session.reset_card(reader.reader_id, 1)
        answer = asyncio.create_task(session.transmit(reader.reader_id, SELECT))
        async with asyncio.timeout(5):
            await resetting.wait()
        assert order == []  # the APDU waits for the reset
        release.set()
        async with asyncio.timeout(5):
            assert await answer == b"\x90\x00"
        session.set_protocol(reader.reader_id, 0)
        async with asyncio.timeout(5):
            assert await session.transmit(reader.reader_id, SELECT) == b"\x90\x00"
        assert order == ["reset T=1", "apdu", "protocol T=0", "apdu"]


async def test_a_failed_reset_fails_every_apdu_until_the_card_is_inserted_again() -> None:
    async def transmit(apdu: bytes) -> bytes:
        return b"\x90\x00"

    async def reset(protocol: int) -> None:
        raise OSError("the reader is gone")

    ready: asyncio.Future[vscard.Session] = asyncio.get_running_loop().create_future()
    server, client, session = await _session(ready)
    async with server, client:
        reader = await client.add_reader("r", transmit=transmit, reset=reset)
        await reader.insert(CARD_ATR)
        session.reset_card(reader.reader_id)
        async with asyncio.timeout(5):
            for _ in range(2):
                with pytest.raises(vscard.APDUFailedError):
                    await session.transmit(reader.reader_id, SELECT)
        await reader.insert(CARD_ATR)
        async with asyncio.timeout(5):
            assert await session.transmit(reader.reader_id, SELECT) == b"\x90\x00"


async def test_a_client_that_does_not_announce_is_never_sent_a_reset() -> None:
    ready: asyncio.Future[vscard.Session] = asyncio.get_running_loop().create_future()
    server, client, session = await _session(ready, card_reset=False)
    async with server, client:
        reader = await client.add_reader("r", transmit=lambda apdu: _ok())
        await reader.insert(CARD_ATR)
        assert not session.card_reset
        assert not client.card_reset
        with pytest.raises(LocalProtocolError):
            session.reset_card(reader.reader_id)


async def _ok() -> bytes:
    return b"\x90\x00"
