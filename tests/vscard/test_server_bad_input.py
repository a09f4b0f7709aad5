"""Hostile or broken clients: each gets a typed error and loses only its own connection."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator

import pytest

import vscard
from tests.logs import capture_logs
from vscard import (
    Decoder,
    Error,
    Init,
    PeerInit,
    ProtocolError,
    ReaderAdd,
    ReaderAdded,
    Session,
    encode,
)
from vscard.asyncio.server import SessionEvent

ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


async def echo_card(apdu: bytes) -> bytes:
    return apdu + b"\x90\x00"


class Recorder:
    def __init__(self) -> None:
        self.sessions: asyncio.Queue[Session] = asyncio.Queue()
        self.finished: asyncio.Queue[Session] = asyncio.Queue()

    async def handler(self, session: Session) -> None:
        await self.sessions.put(session)
        async for _ in session.events():
            pass
        await self.finished.put(session)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Recorder, vscard.Server]]:
    recorder = Recorder()
    async with await vscard.serve(recorder.handler, "127.0.0.1", 0) as server:
        yield recorder, server


GARBAGE = bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (GARBAGE, "header.type"),
        (bytes.fromhex("00000007 00000000 FFFFFFFF") + bytes(1024), "header.length"),
        (bytes.fromhex("00000001 FFFFFFFF 0000000C 4E4F5045 00000002 00000000"), "Init.magic"),
        (bytes.fromhex("000000FF 00000000 00000000"), "header.type"),
        (bytes.fromhex("00000002 00000000 00000001 01"), "Error.length"),
    ],
    ids=["garbage", "length-2^32-1", "wrong-magic", "unknown-type", "short-error"],
)
async def test_malformed_input_closes_only_that_connection(
    served: tuple[Recorder, vscard.Server], payload: bytes, field: str
) -> None:
    recorder, server = served
    # A well-behaved client with a card, mid-session.
    good = await vscard.connect("127.0.0.1", server.port)
    good_session = await asyncio.wait_for(recorder.sessions.get(), 5)
    reader = await good.add_reader(transmit=echo_card)
    await reader.insert(ATR)

    # The hostile one.
    stream_reader, stream_writer = await asyncio.open_connection("127.0.0.1", server.port)
    bad_session = await asyncio.wait_for(recorder.sessions.get(), 5)
    stream_writer.write(payload)
    await stream_writer.drain()
    # The server hangs up on it: EOF, with no reply to any of its bytes.
    assert await asyncio.wait_for(stream_reader.read(), 5) == b""
    assert await asyncio.wait_for(recorder.finished.get(), 5) is bad_session
    assert isinstance(bad_session.error, ProtocolError)
    assert bad_session.error.field == field
    stream_writer.close()

    # The good session goes on.
    assert not good_session.closed
    assert await good_session.transmit(reader.reader_id, b"\x00\xb0\x00\x00") == (
        b"\x00\xb0\x00\x00\x90\x00"
    )
    assert server.connections == 1
    await good.close()


@pytest.mark.parametrize(
    ("tail", "field", "value"),
    [
        (GARBAGE, "header.type", 0x00010203),
        (bytes.fromhex("00000007 00000000 FFFFFFFF"), "header.length", 0xFFFFFFFF),
        (bytes.fromhex("00000002 00000000 00000001 01"), "Error.length", 1),
    ],
    ids=["garbage", "length-2^32-1", "short-error"],
)
async def test_good_frames_before_a_bad_one_are_acted_on_then_the_connection_closes(
    tail: bytes, field: str, value: int
) -> None:
    # Info too: a clean "vscard.disconnected" must not be logged for this connection.
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    seen: list[SessionEvent] = []
    finished = asyncio.Event()

    async def handler(session: Session) -> None:
        await sessions.put(session)
        async for event in session.events():
            seen.append(event)
        finished.set()

    with capture_logs(logging.INFO) as logs:
        async with await vscard.serve(handler, "127.0.0.1", 0) as server:
            stream_reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            session = await asyncio.wait_for(sessions.get(), 5)
            # One write: a good Init and ReaderAdd, then a bad frame, then one never looked at.
            writer.write(encode(Init()) + encode(ReaderAdd(name="r")) + tail + encode(Init()))
            await writer.drain()
            # The good frames are answered, then the server hangs up: no silent wait for more.
            replies = await asyncio.wait_for(stream_reader.read(), 5)
            assert Decoder().feed(replies) == [Init(capabilities=(0x8000_0000,)), Error(0, 0)]
            await asyncio.wait_for(finished.wait(), 5)
            writer.close()
    assert seen == [PeerInit(2, (0,)), ReaderAdded(0, "r")]
    assert isinstance(session.error, ProtocolError)
    assert (session.error.field, session.error.value) == (field, value)
    events = [entry["event"] for entry in logs if entry.get("peer") == session.peer]
    assert "vscard.disconnected" not in events
    assert events.index("vscard.reader_added") < events.index("vscard.protocol_error")
    (logged,) = [entry for entry in logs if entry["event"] == "vscard.protocol_error"]
    assert (logged["field"], logged["value"]) == (field, repr(value))


async def test_truncated_header_then_close_ends_the_session_cleanly(
    served: tuple[Recorder, vscard.Server],
) -> None:
    recorder, server = served
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    session = await asyncio.wait_for(recorder.sessions.get(), 5)
    writer.write(bytes.fromhex("00000007 0000"))
    await writer.drain()
    writer.close()
    assert await asyncio.wait_for(recorder.finished.get(), 5) is session
    assert session.error is None
    assert session.closed


async def test_huge_length_is_refused_before_the_payload_is_read(
    served: tuple[Recorder, vscard.Server],
) -> None:
    recorder, server = served
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    session = await asyncio.wait_for(recorder.sessions.get(), 5)
    writer.write(bytes.fromhex("00000007 00000000 FFFFFFFF"))
    await writer.drain()
    # Nothing of the 4 GiB payload was sent: the header alone gets the connection closed.
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert isinstance(session.error, ProtocolError)
    writer.close()


async def test_connections_past_the_limit_are_closed_at_once() -> None:
    async def hold(session: Session) -> None:
        async for _ in session.events():
            pass

    async with await vscard.serve(hold, "127.0.0.1", 0, max_connections=2) as server:
        clients = [await vscard.connect("127.0.0.1", server.port) for _ in range(2)]
        with pytest.raises((vscard.ConnectionClosedError, ConnectionError, TimeoutError)):
            await vscard.connect("127.0.0.1", server.port, timeout=5)
        assert server.connections == 2
        for client in clients:
            await client.close()


async def test_a_failing_handler_closes_only_its_own_connection() -> None:
    calls = 0

    async def sometimes_broken(session: Session) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("application bug")
        async for _ in session.events():
            pass

    async with await vscard.serve(sometimes_broken, "127.0.0.1", 0) as server:
        with pytest.raises((vscard.ConnectionClosedError, ConnectionError, TimeoutError)):
            await vscard.connect("127.0.0.1", server.port, timeout=5)
        async with await vscard.connect("127.0.0.1", server.port) as client:
            reader = await client.add_reader(transmit=echo_card)
            assert reader.reader_id == 0


async def test_a_slow_loris_client_is_closed_while_others_carry_on() -> None:
    recorder = Recorder()
    server = await vscard.serve(recorder.handler, "127.0.0.1", 0, frame_timeout=0.5)
    async with server:
        good = await vscard.connect("127.0.0.1", server.port)
        good_session = await asyncio.wait_for(recorder.sessions.get(), 5)
        reader = await good.add_reader(transmit=echo_card)
        await reader.insert(ATR)
        _stream_reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        slow_session = await asyncio.wait_for(recorder.sessions.get(), 5)

        async def trickle() -> None:
            # A byte at a time of a header that never ends, faster than any read timeout.
            for byte in bytes.fromhex("00000007 00000000 00000010") * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

        trickling = asyncio.create_task(trickle())
        try:
            assert await asyncio.wait_for(recorder.finished.get(), 10) is slow_session
            assert isinstance(slow_session.error, TimeoutError)
            # All the while, the good session works.
            apdu = b"\x00\xca\x00\x00"
            assert await good_session.transmit(reader.reader_id, apdu) == apdu + b"\x90\x00"
        finally:
            trickling.cancel()
            writer.close()
        await good.close()


async def test_bytes_left_by_a_dead_client_never_reach_the_next_one(
    served: tuple[Recorder, vscard.Server],
) -> None:
    """QEMU keeps a dead client's partial frame and misparses the next client's Init."""
    recorder, server = served
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(bytes.fromhex("00000007 00000000 00000100 DEADBEEF"))  # 7 bytes short of 256
    await writer.drain()
    writer.close()
    await asyncio.wait_for(recorder.finished.get(), 5)
    async with await vscard.connect("127.0.0.1", server.port) as client:
        reader = await client.add_reader(transmit=echo_card)
        await reader.insert(ATR)
        assert reader.reader_id == 0


_Item = (
    vscard.APDURequest | vscard.FlushRequested | vscard.CardResetRequested | vscard.ProtocolChanged
)


class _WatchedQueue(deque[_Item]):
    """A reader's pending requests, recording the longest it got."""

    def __init__(self, full_at: int) -> None:
        super().__init__()
        self.longest = 0
        self.full = asyncio.Event()
        self._full_at = full_at

    def append(self, item: _Item) -> None:
        super().append(item)
        self.longest = max(self.longest, len(self))
        if len(self) >= self._full_at:
            self.full.set()


async def test_a_host_flooding_one_reader_is_served_in_order_with_bounded_memory(
    served: tuple[Recorder, vscard.Server],
) -> None:
    recorder, server = served
    release = asyncio.Event()
    all_seen = asyncio.Event()
    seen: list[bytes] = []
    flood = 40

    async def slow_card(apdu: bytes) -> bytes:
        seen.append(apdu)
        if len(seen) == 1:
            await release.wait()
        if len(seen) == flood:
            all_seen.set()
        return b"\x90\x00"

    async with await vscard.connect("127.0.0.1", server.port) as client:
        reader = await client.add_reader("r", transmit=slow_card)
        await reader.insert(ATR)
        pending = reader._pending = _WatchedQueue(full_at=8)
        session = await recorder.sessions.get()
        # VSCard allows one APDU in flight per reader; this host sends 40 at once.
        messages = [vscard.APDU(reader.reader_id, bytes([0, 0xB0, 0, n, 0])) for n in range(flood)]
        session._writer.write(b"".join(vscard.encode(message) for message in messages))
        await pending.full.wait()  # the card is stuck on the first: the client stops reading
        release.set()
        await all_seen.wait()
        assert seen == [message.data for message in messages]
        assert pending.longest == 8  # never more queued, however many the host sent
