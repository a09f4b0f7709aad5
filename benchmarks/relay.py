"""The floor under a two-hop chain: a relay process in front of an echo process, raw asyncio.

This is what ``ccid-passthru`` and ``vscclient`` would cost if they did nothing but move bytes:
the client sends the USB/IP request of each exchange to the relay (ccid-passthru's place); an
OUT request is answered at once and its forward frame goes on to the echo process (vscclient's
place), whose answer the relay holds until the IN request comes, as a pending bulk IN URB waits
for the card's response. Every message has the size its counterpart has in the real chain.

A client message starts with ``>IIII``: its own length (header included), the reply's length,
the length of the frame to forward (0: none, answer with the held reply) and of the answer to
that frame. The echo process reads ``>II`` (payload length, reply length) and writes the reply.

Run as two processes: ``python -m benchmarks.relay echo`` and ``python -m benchmarks.relay relay
ECHO_PORT``; each prints its port on stdout and serves until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import sys
from collections.abc import Awaitable, Callable

from benchmarks.timing import LoopName, run

CLIENT_HEADER = struct.Struct(">IIII")
ECHO_HEADER = struct.Struct(">II")


def _nodelay(writer: asyncio.StreamWriter) -> None:
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Zeros:
    """Replies are zero bytes of a given length, made once."""

    def __init__(self) -> None:
        self._cache: dict[int, bytes] = {}

    def __call__(self, length: int) -> bytes:
        reply = self._cache.get(length)
        if reply is None:
            reply = self._cache[length] = bytes(length)
        return reply


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _nodelay(writer)
    zeros = _Zeros()
    try:
        while True:
            length, reply = ECHO_HEADER.unpack(await reader.readexactly(ECHO_HEADER.size))
            await reader.readexactly(length)
            writer.write(zeros(reply))
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def relay_handler(
    echo_port: int,
) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer)
        echo_reader, echo_writer = await asyncio.open_connection("127.0.0.1", echo_port)
        _nodelay(echo_writer)
        zeros = _Zeros()
        held: asyncio.Task[bytes] | None = None
        try:
            while True:
                header = await reader.readexactly(CLIENT_HEADER.size)
                length, reply, forward, back = CLIENT_HEADER.unpack(header)
                await reader.readexactly(length - CLIENT_HEADER.size)
                if forward:
                    writer.write(zeros(reply))
                    echo_writer.write(ECHO_HEADER.pack(forward - ECHO_HEADER.size, back))
                    echo_writer.write(zeros(forward - ECHO_HEADER.size))
                    held = asyncio.ensure_future(echo_reader.readexactly(back))
                else:
                    if held is not None:
                        await held
                        held = None
                    writer.write(zeros(reply))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            echo_writer.close()

    return relay


async def serve(role: str, echo_port: int) -> None:
    handler = echo if role == "echo" else relay_handler(echo_port)
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while await stdin.read(4096):
        pass
    server.close()


class FloorClient:
    """The client side: one round trip is the two exchanges of a USB/IP XfrBlock."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        wire: tuple[int, int, int, int],
        hop: tuple[int, int],
    ) -> None:
        out_request, out_reply, in_request, in_reply = wire
        forward, back = hop
        self._reader, self._writer = reader, writer
        self._out = CLIENT_HEADER.pack(out_request, out_reply, forward, back)
        self._out += bytes(out_request - CLIENT_HEADER.size)
        self._in = CLIENT_HEADER.pack(in_request, in_reply, 0, 0)
        self._in += bytes(in_request - CLIENT_HEADER.size)
        self._out_reply, self._in_reply = out_reply, in_reply

    @classmethod
    async def connect(
        cls, port: int, wire: tuple[int, int, int, int], hop: tuple[int, int]
    ) -> FloorClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        _nodelay(writer)
        return cls(reader, writer, wire, hop)

    async def round_trip(self) -> None:
        self._writer.write(self._out)
        await self._reader.readexactly(self._out_reply)
        self._writer.write(self._in)
        await self._reader.readexactly(self._in_reply)

    def close(self) -> None:
        self._writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=("echo", "relay"))
    parser.add_argument("echo_port", type=int, nargs="?", default=0)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()
    loop: LoopName = args.loop
    run(serve(args.role, args.echo_port), loop)


if __name__ == "__main__":
    main()
