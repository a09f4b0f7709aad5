"""cardfloor.aio.inline: bytes handled in the callback that received them, in order, one handler
at a time, errors and EOF delivered to the reading task."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from cardfloor.aio.inline import InlineReading


@asynccontextmanager
async def pair() -> AsyncIterator[tuple[InlineReading, asyncio.StreamWriter]]:
    """A loopback connection: our end's protocol, and the peer's writer."""
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def on_client(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(writer)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stream_reader = asyncio.StreamReader()  # held by the reading side, as a Client does
    protocol = InlineReading(stream_reader)
    transport, _ = await loop.create_connection(lambda: protocol, "127.0.0.1", port)
    peer = await accepted.get()
    try:
        yield protocol, peer
    finally:
        transport.close()
        peer.close()
        server.close()
        await server.wait_closed()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_bytes_reach_the_handler_outside_the_reading_task_in_order() -> None:
    seen: asyncio.Queue[bytes] = asyncio.Queue()
    tasks: list[asyncio.Task[object] | None] = []

    async def handler(data: bytes) -> None:
        tasks.append(asyncio.current_task())
        seen.put_nowait(data)

    async with pair() as (protocol, peer):

        async def read_all() -> bytes:
            out = b""
            while data := await protocol.read(100, handler):
                out += data
            return out

        reading = asyncio.create_task(read_all())
        await until(lambda: protocol._parked)
        for chunk in (b"one", b"two", b"three"):
            peer.write(chunk)
            assert await seen.get() == chunk
        peer.close()
        assert await reading == b""  # every byte went to the handler
    assert set(tasks) == {None}  # run in data_received, not in a task


async def test_a_handler_that_waits_holds_back_later_bytes_and_eof() -> None:
    release = asyncio.Event()
    order: list[str] = []

    async def handler(data: bytes) -> None:
        order.append(f"start {data.decode()}")
        if data == b"slow":
            await release.wait()
        order.append(f"end {data.decode()}")

    async with pair() as (protocol, peer):
        got: list[bytes] = []

        async def read_all() -> None:
            while data := await protocol.read(100, handler):
                got.append(data)
                order.append(f"loop {data.decode()}")

        reading = asyncio.create_task(read_all())
        peer.write(b"slow")
        await until(lambda: order == ["start slow"])
        peer.write(b"later")
        await peer.drain()
        peer.close()
        await asyncio.sleep(0)
        assert order == ["start slow"]  # the reading task waits for the slow handler
        release.set()
        await reading
    assert order == ["start slow", "end slow", "loop later"]


@pytest.mark.parametrize("waits", [False, True])
async def test_a_handler_error_is_raised_by_read(waits: bool) -> None:
    async def handler(data: bytes) -> None:
        if waits:
            await asyncio.sleep(0)
        raise ValueError(f"bad {data!r}")

    async with pair() as (protocol, peer):
        reading = asyncio.create_task(protocol.read(100, handler))
        await until(lambda: protocol._parked)
        peer.write(b"x")
        with pytest.raises(ValueError, match="bad b'x'"):
            await reading


async def test_cancelling_the_reading_task_cancels_a_waiting_handler() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(data: bytes) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with pair() as (protocol, peer):
        reading = asyncio.create_task(protocol.read(100, handler))
        await until(lambda: protocol._parked)
        peer.write(b"x")
        await started.wait()
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        await cancelled.wait()


async def test_a_handler_gets_at_most_the_read_size_and_the_rest_follows_in_order() -> None:
    pieces: list[bytes] = []  # whoever took them: the handler inline, or the reading task

    async def handler(data: bytes) -> None:
        pieces.append(data)

    async with pair() as (protocol, peer):

        async def read_all() -> None:
            while data := await protocol.read(100, handler):
                pieces.append(data)

        reading = asyncio.create_task(read_all())
        await until(lambda: protocol._parked)
        payload = bytes(range(250)) * 40  # most likely one transport read
        peer.write(payload)
        await peer.drain()
        peer.close()
        await reading
    assert b"".join(pieces) == payload
    assert max(len(piece) for piece in pieces) <= 100
