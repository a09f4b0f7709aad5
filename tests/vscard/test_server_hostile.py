"""The server against clients that abuse it: warnings are rate-limited with a count, a silent
connection is closed at the handshake deadline, a burst of frames is handled a batch per loop
turn, and the listen backlog is sized for the limits."""

from __future__ import annotations

import asyncio
import collections

import pytest

import vscard
from cardfloor.aio import stream
from cardfloor.aio.log_limit import LogRateLimit
from tests.logs import capture_logs
from vscard import CardRemove, Init, ReaderAdd, ReaderAdded, ReaderRemove, Session, encode
from vscard.asyncio.server import MESSAGES_PER_TURN
from vscard.codec import Decoder
from vscard.messages import Message


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sessions:
    def __init__(self) -> None:
        self.opened: asyncio.Queue[Session] = asyncio.Queue()
        self.added: asyncio.Queue[ReaderAdded] = asyncio.Queue()
        self.finished: asyncio.Queue[Session] = asyncio.Queue()

    async def handler(self, session: Session) -> None:
        await self.opened.put(session)
        async for event in session.events():
            if isinstance(event, ReaderAdded):
                await self.added.put(event)
        await self.finished.put(session)


async def send(port: int, *messages: Message) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(encode(m) for m in messages))
    await writer.drain()
    return writer


async def test_repeated_warnings_are_rate_limited_and_the_next_line_carries_the_count() -> None:
    clock = Clock()
    sessions = Sessions()
    limit = LogRateLimit(burst=2, interval=1.0, clock=clock)
    with capture_logs() as logs:
        async with await vscard.serve(sessions.handler, "127.0.0.1", 0, log_limit=limit) as server:
            # Five removals of a card in a reader never added; a ReaderAdd marks the end.
            writer = await send(server.port, Init(), *[CardRemove(9)] * 5, ReaderAdd(name="r"))
            await asyncio.wait_for(sessions.added.get(), 5)
            clock.now = 1.0
            writer.write(encode(CardRemove(9)) + encode(ReaderAdd(name="s")))
            await asyncio.wait_for(sessions.added.get(), 5)
            writer.close()
    warned = [line for line in logs if line["event"] == "vscard.unexpected"]
    assert [line.get("suppressed") for line in warned] == [None, None, 3]
    assert all(line["reason"] == "no such reader" for line in warned)


async def test_a_silent_connection_is_closed_at_the_deadline_and_one_that_sent_init_is_not() -> (
    None
):
    sessions = Sessions()
    with capture_logs() as logs:
        async with await vscard.serve(
            sessions.handler, "127.0.0.1", 0, handshake_timeout=0.5
        ) as server:
            quiet = await send(server.port, Init())  # a vscclient waiting for a card
            quiet_session = await asyncio.wait_for(sessions.opened.get(), 5)
            silent_reader, silent = await asyncio.open_connection("127.0.0.1", server.port)
            silent_session = await asyncio.wait_for(sessions.opened.get(), 5)
            # Generous: the deadline is 0.5 s.
            assert await asyncio.wait_for(silent_reader.read(), 10) == b""
            assert await asyncio.wait_for(sessions.finished.get(), 5) is silent_session
            assert isinstance(silent_session.error, TimeoutError)
            # The quiet one's deadline passed before the silent one's: it is still served.
            assert not quiet_session.closed
            quiet.write(encode(ReaderAdd(name="late")))
            assert await asyncio.wait_for(sessions.added.get(), 5) == ReaderAdded(0, "late")
            quiet.close()
            silent.close()
    (timeout,) = [line for line in logs if line["event"] == "vscard.handshake_timeout"]
    assert timeout["handshake_timeout"] == 0.5
    assert timeout["peer"] == silent_session.peer


async def test_a_burst_of_frames_is_handled_a_batch_per_loop_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Count loop turns, and the frames the server handles in each: it answers each of these
    # frames (ReaderRemove of no reader is answered SUCCESS) and writes a batch's answers
    # together. Its writes, not the decoder: a compiled caller never looks Decoder.feed up.
    turns = 0
    answered: collections.Counter[int] = collections.Counter()
    original = asyncio.StreamWriter.write
    client: asyncio.StreamWriter | None = None

    def counting_write(self: asyncio.StreamWriter, data: bytes | bytearray | memoryview) -> None:
        if self is not client:
            answered[turns] += len(Decoder().feed(data))
        original(self, data)

    async def ticker() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)  # once per loop turn
            turns += 1

    monkeypatch.setattr(asyncio.StreamWriter, "write", counting_write)
    sessions = Sessions()
    frames = 65536 // 12
    async with await vscard.serve(sessions.handler, "127.0.0.1", 0) as server:
        ticking = asyncio.create_task(ticker())
        # 64 KiB of frames a client may send.
        reader, client = await asyncio.open_connection("127.0.0.1", server.port)
        client.write(encode(ReaderRemove(5)) * frames)
        await reader.readexactly(16 * frames)  # every one answered
        ticking.cancel()
        client.close()
    assert sum(answered.values()) == frames
    assert max(answered.values()) <= MESSAGES_PER_TURN


async def test_the_listen_backlog_holds_the_connection_limit_or_says_why_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def ignore(session: Session) -> None:
        pass

    assert stream.listen_backlog(1000) == (1000 + stream.BACKLOG_HEADROOM,) * 2 or (
        stream.system_somaxconn() < 1000 + stream.BACKLOG_HEADROOM
    )
    monkeypatch.setattr(stream, "system_somaxconn", lambda: 50)
    with capture_logs() as logs:
        async with await vscard.serve(ignore, "127.0.0.1", 0, max_connections=500):
            pass
    (cut,) = [line for line in logs if line["event"] == "vscard.listen_backlog_cut"]
    assert (cut["backlog"], cut["wanted"]) == (50, 500 + stream.BACKLOG_HEADROOM)
