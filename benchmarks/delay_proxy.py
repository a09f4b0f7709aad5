"""A TCP proxy that delivers every chunk a fixed time after it arrived, in each direction: a
WAN link's latency on loopback, where this kernel has no ``netem``.

Each accepted connection gets its own connection to the target and two pumps. A pump reads a
chunk, stamps its arrival time and queues it; its writer sends the chunk when ``delay`` seconds
have passed since that stamp, in arrival order. The queue holds at most ``max_chunks`` chunks of
at most ``chunk_size`` bytes: when it is full the pump stops reading, so TCP's own window pushes
back on the sender (the link has a latency, not a bandwidth limit). An end of stream travels like
data (the far side's write half is shut ``delay`` later); a reset or error closes both sides.
Both sockets run with ``TCP_NODELAY``, so a small message is not held back waiting for an ACK
that is itself delayed.

Run: ``python -m benchmarks.delay_proxy --target HOST:PORT --delay MS [--listen [HOST:]PORT]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
from collections.abc import Callable
from types import TracebackType

from cardfloor.aio.stream import set_nodelay
from daemons.listen_address import listen_address

#: Bytes one read may take, and so the largest chunk in a queue.
CHUNK_SIZE = 65536
#: Chunks a direction may hold before it stops reading.
MAX_CHUNKS = 64


class Direction(enum.Enum):
    """Which way a chunk travels."""

    UPSTREAM = "upstream"
    """From the accepted client to the target."""
    DOWNSTREAM = "downstream"
    """From the target back to the client."""


Observer = Callable[[Direction, bytes], None]
"""Sees every chunk as it arrives at the proxy (before its delay); must not block."""


class DelayProxy:
    """Listen on ``listen_host:listen_port`` (0: any free port; :attr:`port` tells which) and
    relay each connection to ``target_host:target_port`` with ``delay`` seconds each way.

    Use as ``async with DelayProxy(...) as proxy:``; leaving the block closes the listener and
    every relayed connection.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay: float,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        chunk_size: int = CHUNK_SIZE,
        max_chunks: int = MAX_CHUNKS,
        observe: Observer | None = None,
    ) -> None:
        if delay < 0:
            raise ValueError(f"delay must not be negative, not {delay}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
        if max_chunks < 1:
            raise ValueError(f"max_chunks must be at least 1, not {max_chunks}")
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay
        self._listen = (listen_host, listen_port)
        self._chunk_size = chunk_size
        self._max_chunks = max_chunks
        self._observe = observe
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.connections = 0
        """Connections accepted so far."""

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> int:
        """Listen; returns :attr:`port`."""
        self._server = await asyncio.start_server(self._accepted, *self._listen)
        return self.port

    async def close(self) -> None:
        """Stop listening and close every relayed connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> DelayProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._relay(reader, writer)
        except asyncio.CancelledError:
            # close() cancelled it, and the relay closed both sides: end quietly (asyncio's
            # stream server logs a callback task that ends cancelled as an error).
            pass
        finally:
            self._connections.discard(task)

    async def _relay(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            target_reader, target_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client_writer.close()
            return
        writers = (client_writer, target_writer)
        for writer in writers:
            set_nodelay(writer)
        pumps = [
            asyncio.create_task(self._pump(client_reader, target_writer, Direction.UPSTREAM)),
            asyncio.create_task(self._pump(target_reader, client_writer, Direction.DOWNSTREAM)),
        ]
        try:
            # A pump that fails (a reset) ends the link both ways; a clean end of stream waits
            # for the other direction to end too.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in writers:
                writer.close()
            for writer in writers:
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        loop = asyncio.get_running_loop()
        # (arrival time, chunk): an empty chunk is the end of the stream, None a broken one.
        queue: asyncio.Queue[tuple[float, bytes | None]] = asyncio.Queue(self._max_chunks)

        async def read() -> None:
            while True:
                try:
                    chunk: bytes | None = await reader.read(self._chunk_size)
                except OSError:
                    chunk = None
                if chunk and self._observe is not None:
                    self._observe(direction, chunk)
                await queue.put((loop.time(), chunk))
                if not chunk:
                    return

        reading = asyncio.create_task(read())
        try:
            while True:
                arrived, chunk = await queue.get()
                deadline = arrived + self.delay
                # A timer may fire a little early (asyncio counts a handle due within the
                # clock's resolution): the delay is a floor, so sleep again until it is met.
                while (remaining := deadline - loop.time()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(remaining)
                if chunk is None:
                    raise ConnectionResetError(f"{direction.value}: the sender's side broke")
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    await writer.drain()
                    return
                writer.write(chunk)
                await writer.drain()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


async def _serve(listen: tuple[str, int], target: tuple[str, int], delay: float) -> None:
    async with DelayProxy(*target, delay, listen_host=listen[0], listen_port=listen[1]) as proxy:
        # The command line's one output: where to connect.
        print(f"{listen[0]}:{proxy.port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The daemons' own strict [HOST:]PORT parser: IPv6 in brackets, errors that name the option.
    address = listen_address("127.0.0.1")
    parser.add_argument("--target", type=address, required=True, help="[HOST:]PORT to relay to")
    parser.add_argument("--delay", type=float, required=True, help="one-way delay in ms")
    parser.add_argument(
        "--listen", type=address, default="127.0.0.1:0", help="[HOST:]PORT (default: any port)"
    )
    args = parser.parse_args()
    listen = (args.listen.host or "127.0.0.1", args.listen.port)
    target = (args.target.host or "127.0.0.1", args.target.port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(listen, target, args.delay / 1000))


if __name__ == "__main__":
    main()
