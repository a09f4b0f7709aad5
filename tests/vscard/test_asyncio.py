"""Our client against our server, in process: what an application sees on each side."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

import vscard
from tests.logs import capture_logs
from vscard import (
    APDU,
    APDUFailedError,
    CardInserted,
    CardRemoved,
    ConnectionClosedError,
    Decoder,
    Error,
    Init,
    PeerInit,
    ProtocolError,
    ReaderAdded,
    ReaderRemoved,
    RequestRefusedError,
    Session,
    encode,
)

ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")
SELECT = bytes.fromhex("00A4040007A0000000790100")


async def toy_card(apdu: bytes) -> bytes:
    """Answers SELECT with 9000 and everything else with 6D00 (INS not supported)."""
    return b"\x90\x00" if apdu[:2] == b"\x00\xa4" else b"\x6d\x00"


class Host:
    """A server whose handler records events and lets the test drive each session."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()
        self.events: dict[str, list[object]] = {}
        self.ended: dict[str, asyncio.Event] = {}

    async def handler(self, session: Session) -> None:
        log = self.events.setdefault(session.peer, [])
        ended = self.ended.setdefault(session.peer, asyncio.Event())
        await self.sessions.put(session)
        try:
            async for event in session.events():
                log.append(event)
        finally:
            ended.set()


@pytest.fixture
async def host() -> AsyncIterator[tuple[Host, vscard.Server]]:
    recorder = Host()
    async with await vscard.serve(recorder.handler, "127.0.0.1", 0) as server:
        yield recorder, server


async def next_event(session: Session, kind: type) -> object:
    event = await asyncio.wait_for(session.next_event(), 5)
    assert isinstance(event, kind), event
    return event


async def test_full_reader_card_apdu_session() -> None:
    events: asyncio.Queue[object] = asyncio.Queue()

    async def handler(session: Session) -> None:
        async for event in session.events():
            await events.put(event)
            if isinstance(event, CardInserted):
                await events.put(await session.transmit(event.reader_id, SELECT))
                await events.put(await session.transmit(event.reader_id, b"\x00\xca\x00\x00"))

    server = await vscard.serve(handler, "127.0.0.1", 0)
    async with server, await vscard.connect("127.0.0.1", server.port) as client:
        assert client.host_version == 2
        reader = await client.add_reader("Virtual Reader", transmit=toy_card)
        assert reader.reader_id == 0
        await reader.insert(ATR)
        seen = [await asyncio.wait_for(events.get(), 5) for _ in range(5)]
        assert seen == [
            PeerInit(2, (0xE000_0000,)),  # our client: CARD_RESET, RESPONSE_CHAIN, READ_AHEAD
            ReaderAdded(0, "Virtual Reader"),
            CardInserted(0, ATR),
            b"\x90\x00",
            b"\x6d\x00",
        ]
        await reader.remove()
        assert [await asyncio.wait_for(events.get(), 5) for _ in range(2)] == [
            CardRemoved(0),
            ReaderRemoved(0),
        ]


async def test_server_sees_readers_and_card_state(host: tuple[Host, vscard.Server]) -> None:
    recorder, server = host
    client = await vscard.connect("127.0.0.1", server.port)
    session = await asyncio.wait_for(recorder.sessions.get(), 5)
    first = await client.add_reader("first", transmit=toy_card)
    second = await client.add_reader("second", transmit=toy_card)
    await second.insert(ATR)
    assert (first.reader_id, second.reader_id) == (0, 1)
    assert session.readers[1].atr == ATR
    assert not session.readers[0].card_present
    assert await session.transmit(1, SELECT) == b"\x90\x00"
    await client.close()
    await asyncio.wait_for(recorder.ended[session.peer].wait(), 5)
    # close() removes cards and readers before it hangs up, as QEMU expects.
    assert recorder.events[session.peer][-3:] == [
        ReaderRemoved(0),
        CardRemoved(1),
        ReaderRemoved(1),
    ]


async def test_card_failure_reaches_the_server_as_apdu_failed(
    host: tuple[Host, vscard.Server],
) -> None:
    recorder, server = host

    async def broken_card(apdu: bytes) -> bytes:
        raise OSError("card reader unplugged")

    async with await vscard.connect("127.0.0.1", server.port) as client:
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await client.add_reader(transmit=broken_card)
        await reader.insert(ATR)
        with pytest.raises(APDUFailedError) as caught:
            await session.transmit(reader.reader_id, SELECT)
        assert caught.value.code == vscard.ErrorCode.GENERAL_ERROR


async def test_card_removal_waits_for_the_apdu_in_flight(host: tuple[Host, vscard.Server]) -> None:
    recorder, server = host
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_card(apdu: bytes) -> bytes:
        started.set()
        await release.wait()
        return b"\x90\x00"

    async with await vscard.connect("127.0.0.1", server.port) as client:
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await client.add_reader(transmit=slow_card)
        await reader.insert(ATR)
        transmit = asyncio.create_task(session.transmit(reader.reader_id, SELECT))
        await asyncio.wait_for(started.wait(), 5)
        removal = asyncio.create_task(reader.remove_card())
        await asyncio.sleep(0)  # one turn of the loop: the removal now waits for the card
        assert not removal.done()
        release.set()
        # Had the removal gone first, the server would have raised CardRemovedError here.
        assert await asyncio.wait_for(transmit, 5) == b"\x90\x00"
        await asyncio.wait_for(removal, 5)
        assert reader.atr is None


async def test_flush_is_answered_after_earlier_apdus(host: tuple[Host, vscard.Server]) -> None:
    recorder, server = host
    async with await vscard.connect("127.0.0.1", server.port) as client:
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await client.add_reader(transmit=toy_card)
        await reader.insert(ATR)
        await asyncio.wait_for(session.flush(reader.reader_id), 5)


async def test_refused_atr_raises_request_refused(host: tuple[Host, vscard.Server]) -> None:
    _, server = host
    async with await vscard.connect("127.0.0.1", server.port) as client:
        reader = await client.add_reader(transmit=toy_card)
        with pytest.raises(RequestRefusedError) as caught:
            await reader.insert(bytes.fromhex("3B02AA"))
        assert caught.value.code == vscard.ErrorCode.GENERAL_ERROR
        assert reader.atr is None


async def test_reader_limit_is_reported_to_the_client() -> None:
    async def idle(session: Session) -> None:
        async for _ in session.events():
            pass

    server = await vscard.serve(idle, "127.0.0.1", 0, max_readers=1)
    async with server, await vscard.connect("127.0.0.1", server.port) as client:
        await client.add_reader(transmit=toy_card)
        with pytest.raises(RequestRefusedError) as caught:
            await client.add_reader(transmit=toy_card)
        assert caught.value.code == vscard.ErrorCode.CANNOT_ADD_MORE_READERS


async def test_ipv6_loopback_works() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    recorder = Host()
    try:
        server = await vscard.serve(recorder.handler, "::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    async with server, await vscard.connect("::1", server.port) as client:
        reader = await client.add_reader(transmit=toy_card)
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        assert session.peer.startswith("[::1]:")
        await reader.insert(ATR)
        assert await session.transmit(reader.reader_id, SELECT) == b"\x90\x00"


async def test_server_close_ends_the_client_and_fails_pending_transmits(
    host: tuple[Host, vscard.Server],
) -> None:
    recorder, server = host
    started, never = asyncio.Event(), asyncio.Event()

    async def stuck_card(apdu: bytes) -> bytes:
        started.set()
        await never.wait()
        return b""

    client = await vscard.connect("127.0.0.1", server.port)
    session = await asyncio.wait_for(recorder.sessions.get(), 5)
    reader = await client.add_reader(transmit=stuck_card)
    await reader.insert(ATR)
    transmit = asyncio.create_task(session.transmit(reader.reader_id, SELECT))
    await asyncio.wait_for(started.wait(), 5)
    server.close()
    await asyncio.wait_for(server.wait_closed(), 5)
    with pytest.raises((ConnectionClosedError, asyncio.CancelledError)):
        await transmit
    await asyncio.wait_for(client.wait_closed(), 5)
    assert client.closed


async def test_connect_times_out_against_a_host_that_never_sends_init() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(TimeoutError):
            await vscard.connect("127.0.0.1", port, timeout=0.2)


async def test_a_host_apdu_then_garbage_reaches_the_card_then_ends_the_client() -> None:
    # Info too: a clean "vscard.disconnected" must not be logged.
    writers: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()
    seen: list[bytes] = []

    async def raw_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers Init with Init and each request with success; the test sends the rest."""
        await writers.put(writer)
        decoder = Decoder()
        while data := await reader.read(65536):
            for message in decoder.feed(data):
                if isinstance(message, Init):
                    writer.write(encode(Init()))
                elif not isinstance(message, APDU | Error):  # nothing to a card's answer
                    writer.write(encode(Error(0, 0)))
        writer.close()

    async def card(apdu: bytes) -> bytes:
        seen.append(apdu)
        return b"\x90\x00"

    server = await asyncio.start_server(raw_host, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with capture_logs(logging.INFO) as logs:
        async with server:
            client = await vscard.connect("127.0.0.1", port)
            # eager, as vscclient runs it: the card answers inside the read loop, before the
            # error ends the client (a reader task would be cancelled with the connection).
            reader = await client.add_reader("r", transmit=card, eager=True)
            await reader.insert(ATR)
            host_writer = await writers.get()
            # One write: a good APDU, then a frame of an unknown type, then one never looked at.
            garbage = bytes.fromhex("000000FF 00000000 00000000")
            host_writer.write(encode(APDU(reader.reader_id, SELECT)) + garbage + encode(Init()))
            with pytest.raises(ProtocolError) as caught:
                await asyncio.wait_for(client.wait_closed(), 5)  # never a silent wait
            assert client.closed
            await client.close()
    assert seen == [SELECT]  # the card got the APDU before the client ended
    assert (caught.value.field, caught.value.value) == ("header.type", 0xFF)
    events = [entry["event"] for entry in logs]
    assert "vscard.disconnected" not in events
    (logged,) = [entry for entry in logs if entry["event"] == "vscard.protocol_error"]
    assert (logged["field"], logged["value"]) == ("header.type", repr(0xFF))


async def test_sockets_have_nagle_off(host: tuple[Host, vscard.Server]) -> None:
    _, server = host
    async with await vscard.connect("127.0.0.1", server.port) as client:
        sock = client._writer.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


async def test_many_connections_each_with_its_own_reader_table() -> None:
    sessions: asyncio.Queue[Session] = asyncio.Queue()

    async def handler(session: Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                await sessions.put(session)

    async with await vscard.serve(handler, "127.0.0.1", 0) as server:
        clients = await asyncio.gather(
            *(vscard.connect("127.0.0.1", server.port) for _ in range(50))
        )
        readers = await asyncio.gather(*(c.add_reader(transmit=toy_card) for c in clients))
        assert {reader.reader_id for reader in readers} == {0}  # ids are per connection
        await asyncio.gather(*(reader.insert(ATR) for reader in readers))
        ready = [await asyncio.wait_for(sessions.get(), 5) for _ in range(50)]
        answers = await asyncio.gather(*(s.transmit(0, SELECT) for s in ready))
        assert answers == [b"\x90\x00"] * 50
        assert server.connections == 50
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_card_handler_may_use_asyncio_timeout(host: tuple[Host, vscard.Server]) -> None:
    """By default a handler runs in its own task: its timeouts cancel it, not the connection."""
    recorder, server = host

    async def impatient_card(apdu: bytes) -> bytes:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()  # a card that never answers in time
        except TimeoutError:
            return b"\x6f\x00"
        raise AssertionError("unreachable")

    async with await vscard.connect("127.0.0.1", server.port) as client:
        reader = await client.add_reader("r", transmit=impatient_card)
        await reader.insert(ATR)
        session = await recorder.sessions.get()
        assert await session.transmit(reader.reader_id, SELECT) == b"\x6f\x00"
        assert await session.transmit(reader.reader_id, SELECT) == b"\x6f\x00"
        assert not client.closed


def answers() -> tuple[asyncio.Future[bytes | Exception], vscard.asyncio.server.Answered]:
    """A future that gets what a transmit_soon callback is given."""
    future: asyncio.Future[bytes | Exception] = asyncio.get_running_loop().create_future()
    return future, future.set_result


async def test_transmit_soon_hands_the_response_or_the_failure_to_a_callback(
    host: tuple[Host, vscard.Server],
) -> None:
    recorder, server = host

    async def card(apdu: bytes) -> bytes:
        if apdu == SELECT:
            return b"\x90\x00"
        raise OSError("card reader unplugged")

    async with await vscard.connect("127.0.0.1", server.port) as client:
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await client.add_reader(transmit=card)
        await reader.insert(ATR)
        answered, answer = answers()
        assert session.transmit_soon(reader.reader_id, SELECT, answer)
        assert await asyncio.wait_for(answered, 5) == b"\x90\x00"
        failed, fail = answers()
        assert session.transmit_soon(reader.reader_id, b"\x00\xb0\x00\x00", fail)
        error = await asyncio.wait_for(failed, 5)
        assert isinstance(error, APDUFailedError)
        assert error.code == vscard.ErrorCode.GENERAL_ERROR


async def test_transmit_soon_leaves_the_reader_to_a_transmit_in_progress(
    host: tuple[Host, vscard.Server],
) -> None:
    recorder, server = host
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[bytes] = []

    async def slow_card(apdu: bytes) -> bytes:
        seen.append(apdu)
        started.set()
        await release.wait()
        return b"\x90\x00"

    async with await vscard.connect("127.0.0.1", server.port) as client:
        session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await client.add_reader(transmit=slow_card)
        await reader.insert(ATR)
        transmit = asyncio.create_task(session.transmit(reader.reader_id, SELECT))
        await asyncio.wait_for(started.wait(), 5)
        _, answer = answers()
        assert not session.transmit_soon(reader.reader_id, b"\x00\xb0\x00\x00", answer)
        release.set()
        assert await asyncio.wait_for(transmit, 5) == b"\x90\x00"
        assert seen == [SELECT]  # nothing was sent for the refused call


async def test_transmit_soon_in_flight_fails_when_the_client_goes_after_events_end(
    host: tuple[Host, vscard.Server],
) -> None:
    recorder, server = host
    started = asyncio.Event()

    async def stuck_card(apdu: bytes) -> bytes:
        started.set()
        await asyncio.Event().wait()
        return b""

    client = await vscard.connect("127.0.0.1", server.port)
    session = await asyncio.wait_for(recorder.sessions.get(), 5)
    reader = await client.add_reader(transmit=stuck_card)
    await reader.insert(ATR)
    ended = recorder.ended[session.peer]
    answered: asyncio.Future[tuple[bytes | Exception, bool]]
    answered = asyncio.get_running_loop().create_future()
    # What the callback gets, and whether the handler had seen the session end by then.
    assert session.transmit_soon(
        reader.reader_id, SELECT, lambda result: answered.set_result((result, ended.is_set()))
    )
    await asyncio.wait_for(started.wait(), 5)
    client._writer.transport.abort()  # the client is gone without a word
    result, events_ended = await asyncio.wait_for(answered, 5)
    assert isinstance(result, ConnectionClosedError)
    assert events_ended
    await client.close()
