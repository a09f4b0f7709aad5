"""The server handles a client's frames in the callback that received them once its Init is in
(cardfloor.aio.inline): a frame split across reads still arrives whole, and one left incomplete
still meets the frame deadline."""

from __future__ import annotations

import asyncio

import vscard
from vscard import PeerInit, ReaderAdded, Session
from vscard.codec import encode
from vscard.messages import Init, ReaderAdd


async def test_a_frame_split_across_reads_arrives_whole() -> None:
    sessions: asyncio.Queue[Session] = asyncio.Queue()
    seen: asyncio.Queue[object] = asyncio.Queue()

    async def handler(session: Session) -> None:
        await sessions.put(session)
        async for event in session.events():
            await seen.put(event)

    async with await vscard.serve(handler, "127.0.0.1", 0) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode(Init()))
        await writer.drain()
        assert isinstance(await asyncio.wait_for(seen.get(), 5), PeerInit)
        frame = encode(ReaderAdd(name="split"))
        for part in (frame[:5], frame[5:14], frame[14:]):
            writer.write(part)
            await writer.drain()
        added = await asyncio.wait_for(seen.get(), 5)
        assert isinstance(added, ReaderAdded)
        assert added.name == "split"
        writer.close()


async def test_a_frame_left_incomplete_after_the_init_is_timed_out() -> None:
    events: asyncio.Queue[object] = asyncio.Queue()
    ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

    async def handler(session: Session) -> None:
        async for event in session.events():
            await events.put(event)
        ended.set_result(session.error)

    async with await vscard.serve(handler, "127.0.0.1", 0, frame_timeout=0.3) as server:
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(encode(Init()))
        await writer.drain()
        assert isinstance(await asyncio.wait_for(events.get(), 5), PeerInit)
        # Handled where it was received: the reading task waits without a deadline meanwhile.
        writer.write(encode(ReaderAdd(name="never ends"))[:-3])
        await writer.drain()
        assert isinstance(await asyncio.wait_for(ended, 10), TimeoutError)
        writer.close()
