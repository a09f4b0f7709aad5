"""The delay proxy relays bytes intact, in order, both ways, never sooner than its delay, and
passes an end of stream on. (No timed upper bound: a busy machine may only make it slower.)"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.delay_proxy import DelayProxy, Direction

DELAY = 0.02


@asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """A TCP echo server; it half-closes after its client does."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    async with asyncio.timeout(30):
        return await reader.readexactly(size)


async def test_a_round_trip_takes_at_least_twice_the_delay() -> None:
    async with echo_server() as port, DelayProxy("127.0.0.1", port, DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        for _ in range(3):
            began = time.monotonic()
            writer.write(b"ping")
            assert await read_exactly(reader, 4) == b"ping"
            assert time.monotonic() - began >= 2 * DELAY
        writer.close()
        await writer.wait_closed()


async def test_bytes_arrive_intact_and_in_order_both_ways() -> None:
    """Many writes of many sizes, more than the queue holds at once: what comes back is what
    went out; and what the observer saw each way is the same stream."""
    seen: dict[Direction, bytearray] = {d: bytearray() for d in Direction}

    def observe(direction: Direction, chunk: bytes) -> None:
        seen[direction] += chunk

    payload = os.urandom(3 * 1024 * 1024)
    async with (
        echo_server() as port,
        DelayProxy("127.0.0.1", port, 0.001, max_chunks=4, observe=observe) as proxy,
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)

        async def send() -> None:
            offset, size = 0, 1
            while offset < len(payload):
                writer.write(payload[offset : offset + size])
                offset += size
                size = size * 3 % 70001 + 1
                await writer.drain()
            writer.write_eof()

        sending = asyncio.create_task(send())
        received = await read_exactly(reader, len(payload))
        await sending
        async with asyncio.timeout(30):
            assert await reader.read() == b""  # the echo's end of stream came back
        writer.close()
        await writer.wait_closed()
    assert received == payload
    assert seen[Direction.UPSTREAM] == payload
    assert seen[Direction.DOWNSTREAM] == payload


async def test_the_delay_applies_each_way() -> None:
    """A server that speaks first: its greeting reaches the client no sooner than the delay."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(str(time.monotonic()).encode() + b"\n")
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with server, DelayProxy("127.0.0.1", port, DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        async with asyncio.timeout(30):
            sent = float(await reader.readline())
        assert time.monotonic() - sent >= DELAY
        writer.close()
        await writer.wait_closed()


async def test_a_close_by_the_client_reaches_the_server_and_back() -> None:
    closed = asyncio.Event()

    async def wait_for_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.read() == b""
        closed.set()
        writer.close()

    server = await asyncio.start_server(wait_for_eof, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with server, DelayProxy("127.0.0.1", port, DELAY) as proxy:
        _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(30):
            await closed.wait()


async def test_a_close_by_the_server_reaches_the_client() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"bye")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    async with server, DelayProxy("127.0.0.1", port, DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        async with asyncio.timeout(30):
            assert await reader.read() == b"bye"  # read() returns at the end of the stream
        writer.close()
        await writer.wait_closed()


async def test_a_target_that_is_not_there_closes_the_client() -> None:
    async with echo_server() as port:
        pass  # now nothing listens on port
    async with DelayProxy("127.0.0.1", port, DELAY) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        async with asyncio.timeout(30):
            assert await reader.read() == b""
        writer.close()


@settings(max_examples=20, deadline=None)
@given(chunks=st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=20))
def test_any_sequence_of_writes_comes_back_in_order(chunks: list[bytes]) -> None:
    async def run() -> bytes:
        async with echo_server() as port, DelayProxy("127.0.0.1", port, 0.0) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            for chunk in chunks:
                writer.write(chunk)
            writer.write_eof()
            async with asyncio.timeout(30):
                echoed = await reader.read(-1)
            writer.close()
            return echoed

    assert asyncio.run(run()) == b"".join(chunks)


@pytest.mark.parametrize(
    ("delay", "chunk_size", "max_chunks"), [(-1.0, 1, 1), (0.0, 0, 1), (0.0, 1, 0)]
)
def test_bad_settings_are_refused(delay: float, chunk_size: int, max_chunks: int) -> None:
    with pytest.raises(ValueError, match="must"):
        DelayProxy("127.0.0.1", 1, delay, chunk_size=chunk_size, max_chunks=max_chunks)
