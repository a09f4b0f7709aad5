"""APDU round trips through USB/IP on loopback, beside plain asyncio TCP moving the same bytes.

One round trip is what the kernel does for libccid: CMD_SUBMIT bulk OUT carrying the XfrBlock,
its RET_SUBMIT, CMD_SUBMIT bulk IN asking 65,556 bytes, its RET_SUBMIT carrying the DataBlock.
Our :mod:`ccid.usbip` client (the kernel's part) talks to our server in a child process, which
runs a :class:`ccid.CCIDDevice` with a :class:`ccid.MemoryCard` that answers at once.

The baseline is the floor under that: the same two request/reply exchanges with the same byte
counts, between the same two processes, over asyncio streams with TCP_NODELAY, to a server that
only reads a request (an 8-byte header names its length and the reply's) and writes the reply.
The two alternate in blocks so drift hits both alike; rates and CPU are the best block's (other
processes only ever slow a block down), latency percentiles pool all round trips. The ratio row
divides ours by the baseline: round trips per second (below 1 is slower), latency and CPU
(above 1 costs more).

CPU is per round trip and per side: the server process (our USB/IP server, the reader and the
card: what a deployment runs) and the client process (our client, standing in for the kernel).
The server's CPU is then split, by timing the layers alone in this process: the sans-IO
:class:`~ccid.usbip.USBIPServerConnection` (two URBs in, two RET_SUBMITs out), the sans-IO
:class:`~ccid.CCIDReader`, the :class:`~ccid.CCIDDevice` adapter with its card task (driven
directly, no USB/IP), the asyncio TCP floor (the baseline server's CPU), and the rest: the
USB/IP server's adapter (a task per URB, its bookkeeping and logging), plus what the layers lose
to cold caches between syscalls (alone they run warm), so the rest is an upper bound.

Run: ``python -m benchmarks.bench_usbip [--count 4000] [--loop asyncio|uvloop]``;
``taskset -c 1 python -m ...`` puts both processes on one core (the child inherits the affinity).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from benchmarks.report import Figure, Section
from benchmarks.timing import LoopName
from benchmarks.timing import run as run_on
from ccid import CCIDDevice, CCIDReader, MemoryCard, ReaderConfiguration
from ccid.card import TEST_ATR
from ccid.codec import encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.events import APDURequested
from ccid.messages import PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock
from ccid.usb import SetupPacket
from ccid.usbip import (
    CmdSubmit,
    Direction,
    ExportedDevice,
    OpReqImport,
    USBIPClient,
    USBIPServerConnection,
    encode_usbip,
    import_device,
    serve_usbip,
)
from ccid.usbip.constants import URB_HEADER_SIZE

OK = b"\x90\x00"
#: libccid's bulk IN buffer for an XfrBlock answer.
XFR_BUFFER = 65556
CCID_HEADER = 10
#: The echo server's request header: request payload length, reply length.
ECHO_HEADER = struct.Struct(">II")


@dataclass(frozen=True)
class Scenario:
    name: str
    apdu: bytes
    response_length: int  # response data + SW1 SW2

    @property
    def xfr_block(self) -> bytes:
        return encode(PC_to_RDR_XfrBlock(0, 1, self.apdu))

    @property
    def response(self) -> bytes:
        return card_answer(self.apdu)

    @property
    def wire(self) -> tuple[int, int, int, int]:
        """USB/IP bytes of one round trip: OUT request, OUT reply, IN request, IN reply."""
        return (
            URB_HEADER_SIZE + CCID_HEADER + len(self.apdu),
            URB_HEADER_SIZE,
            URB_HEADER_SIZE,
            URB_HEADER_SIZE + CCID_HEADER + self.response_length,
        )


SCENARIOS = (
    Scenario("SELECT, 9000", bytes.fromhex("00A4040C07A0000000790100"), 2),
    Scenario("sign: 261-byte APDU, 258 back", bytes.fromhex("002A9E9A00") + bytes(256), 258),
    Scenario("READ BINARY, 65,282 back", bytes.fromhex("00B00000000000"), 65282),
)


def card_answer(apdu: bytes) -> bytes:
    """The card: READ BINARY with extended Le 0000 gives 65,280 bytes, PSO 256, else 9000."""
    match apdu[1]:
        case 0xB0:
            return bytes(65280) + OK
        case 0x2A:
            return bytes(256) + OK
    return OK


# -- the server process ---------------------------------------------------------------------


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The baseline server: read a request, write the reply its header asks for."""
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    replies: dict[int, bytes] = {}
    try:
        while True:
            length, reply = ECHO_HEADER.unpack(await reader.readexactly(ECHO_HEADER.size))
            await reader.readexactly(length)
            if reply not in replies:
                replies[reply] = bytes(reply)
            writer.write(replies[reply])
    except asyncio.IncompleteReadError:
        writer.close()


async def serve_both() -> None:
    """Serve USB/IP and echo; print both ports; answer "cpu" on stdin with our CPU time (ns)."""
    device = CCIDDevice(ReaderConfiguration(serial="BENCH"))
    device.insert_card(MemoryCard(respond=card_answer))
    server = await serve_usbip([device], port=0)
    echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    echo_port = echo_server.sockets[0].getsockname()[1]
    print(server.port, echo_port, flush=True)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while await stdin.readline():
        print(time.process_time_ns(), flush=True)
    server.close()
    echo_server.close()
    await server.wait_closed()
    await device.aclose()


# -- the client process ---------------------------------------------------------------------


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None
        assert process.stdout is not None
        self._stdin = process.stdin
        self._stdout = process.stdout

    @classmethod
    async def start(cls, loop: LoopName) -> tuple[ServerProcess, int, int]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.bench_usbip",
            "--serve",
            "--loop",
            loop,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(process)
        usbip_port, echo_port = map(int, (await server._stdout.readline()).split())
        return server, usbip_port, echo_port

    async def cpu_ns(self) -> int:
        self._stdin.write(b"cpu\n")
        return int(await self._stdout.readline())

    async def stop(self) -> None:
        self._stdin.close()
        await self.process.wait()


@dataclass(frozen=True)
class Block:
    """Round trips timed back to back on one path."""

    count: int
    elapsed_ns: int
    client_cpu_ns: int
    server_cpu_ns: int


@dataclass
class Measurement:
    """One path's blocks. Other processes can only slow a block down, so rates and CPU are the
    best block's; latency percentiles pool every round trip."""

    latencies_ns: list[int] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.latencies_ns)

    @property
    def rate(self) -> float:
        return max(block.count / (block.elapsed_ns / 1e9) for block in self.blocks)

    def percentile_us(self, fraction: float) -> float:
        ordered = sorted(self.latencies_ns)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] / 1000

    def cpu_us(self, side: str) -> float:
        return (
            min(
                (block.client_cpu_ns if side == "client" else block.server_cpu_ns) / block.count
                for block in self.blocks
            )
            / 1000
        )


RoundTrip = Callable[[], Awaitable[object]]


async def measure(
    server: ServerProcess, round_trip: RoundTrip, count: int, into: Measurement
) -> None:
    server_before = await server.cpu_ns()
    client_before = time.process_time_ns()
    start = time.perf_counter_ns()
    latencies = into.latencies_ns
    for _ in range(count):
        began = time.perf_counter_ns()
        await round_trip()
        latencies.append(time.perf_counter_ns() - began)
    elapsed = time.perf_counter_ns() - start
    client_cpu = time.process_time_ns() - client_before
    server_cpu = await server.cpu_ns() - server_before
    into.blocks.append(Block(count, elapsed, client_cpu, server_cpu))


def usbip_round_trip(client: USBIPClient, scenario: Scenario) -> RoundTrip:
    wire = scenario.xfr_block
    expected = CCID_HEADER + scenario.response_length

    async def round_trip() -> None:
        await client.transfer_out(BULK_OUT, wire)
        answer = await client.transfer_in(BULK_IN, XFR_BUFFER)
        assert len(answer) == expected, len(answer)

    return round_trip


def echo_round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scenario: Scenario
) -> RoundTrip:
    out_request, out_reply, in_request, in_reply = scenario.wire
    first = ECHO_HEADER.pack(out_request - ECHO_HEADER.size, out_reply)
    first += bytes(out_request - ECHO_HEADER.size)
    second = ECHO_HEADER.pack(in_request - ECHO_HEADER.size, in_reply)
    second += bytes(in_request - ECHO_HEADER.size)

    async def round_trip() -> None:
        writer.write(first)
        await reader.readexactly(out_reply)
        writer.write(second)
        await reader.readexactly(in_reply)

    return round_trip


# -- the layers alone, in this process ------------------------------------------------------


def cpu_us(step: Callable[[], object], count: int) -> float:
    """CPU microseconds per call of ``step`` (the best of three runs)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time_ns()
        for _ in range(count):
            step()
        best = min(best, (time.process_time_ns() - start) / count / 1000)
    return best


def usbip_connection_step(scenario: Scenario) -> Callable[[], object]:
    """One round trip through a sans-IO USBIPServerConnection: two CMD_SUBMITs in, two RET_SUBMITs
    out (the IN one carrying the DataBlock)."""
    summary = CCIDDevice(ReaderConfiguration(serial="BENCH")).summary
    record = ExportedDevice.from_summary(summary, busid="1-1", busnum=1, devnum=1, path="/b")
    conn = USBIPServerConnection()
    conn.receive_data(encode_usbip(OpReqImport("1-1")))
    conn.accept_import(record)
    conn.data_to_send()
    xfr = scenario.xfr_block
    out = encode_usbip(CmdSubmit(1, record.devid, Direction.OUT, 3, 0, len(xfr), data=xfr))
    in_ = encode_usbip(CmdSubmit(2, record.devid, Direction.IN, 2, 0, XFR_BUFFER))
    answer = bytes(CCID_HEADER) + scenario.response

    def step() -> None:
        conn.receive_data(out)
        conn.complete(1)
        conn.data_to_send()
        conn.receive_data(in_)
        conn.complete(2, data=answer)
        conn.data_to_send()

    return step


def reader_step(scenario: Scenario) -> Callable[[], object]:
    """One XfrBlock through a sans-IO CCIDReader, as CCIDDevice drives it."""
    reader = CCIDReader(ReaderConfiguration(serial="BENCH"))
    reader.insert_card(TEST_ATR)
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 0)), 0.0)
    reader.read_bulk_in(XFR_BUFFER)
    xfr, response = scenario.xfr_block, scenario.response

    def step() -> None:
        (event,) = reader.receive_bulk_out(xfr, 0.0)
        assert isinstance(event, APDURequested)
        reader.get_timer()
        reader.apdu_response(event.request, response)
        reader.get_timer()
        reader.read_bulk_in(XFR_BUFFER)
        reader.get_timer()

    return step


async def device_cpu_us(scenario: Scenario, count: int) -> float:
    """CPU microseconds per XfrBlock through CCIDDevice, its card task and timer, no USB/IP."""
    device = CCIDDevice(ReaderConfiguration(serial="BENCH"))
    device.insert_card(MemoryCard(respond=card_answer))
    await device.transfer_out(BULK_OUT, encode(PC_to_RDR_IccPowerOn(0, 0)))
    await device.transfer_in(BULK_IN, 43)
    xfr = scenario.xfr_block
    best = float("inf")
    for _ in range(3):
        start = time.process_time_ns()
        for _ in range(count):
            await device.transfer_out(BULK_OUT, xfr)
            await device.transfer_in(BULK_IN, XFR_BUFFER)
        best = min(best, (time.process_time_ns() - start) / count / 1000)
    await device.aclose()
    return best


@dataclass
class Layers:
    usbip_connection: float
    reader: float
    device: float  # the reader included

    @classmethod
    async def measure(cls, scenario: Scenario, count: int) -> Layers:
        return cls(
            cpu_us(usbip_connection_step(scenario), count),
            cpu_us(reader_step(scenario), count),
            await device_cpu_us(scenario, count),
        )


async def run(count: int, rounds: int, loop: LoopName = "asyncio") -> Section:
    server, usbip_port, echo_port = await ServerProcess.start(loop)
    result = Section(
        f"usbip ({loop})",
        "USB/IP client -> our USB/IP server + CCID reader + in-process card (another process), "
        "against asyncio TCP moving the same bytes",
    )
    try:
        client = await import_device("1-1", port=usbip_port)
        await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION(1)
        await client.transfer_out(BULK_OUT, encode(PC_to_RDR_IccPowerOn(0, 0)))
        await client.transfer_in(BULK_IN, 43)
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        affinity = sorted(os.sched_getaffinity(0))
        print(f"client and server in two processes on CPUs {affinity}; {rounds} alternating blocks")
        for scenario in SCENARIOS:
            n = count if scenario.response_length < 4096 else max(rounds, count // 8)
            ours, floor = Measurement(), Measurement()
            usbip = usbip_round_trip(client, scenario)
            plain = echo_round_trip(reader, writer, scenario)
            for _ in range(max(1, n // 10)):  # warm up both paths
                await usbip()
                await plain()
            for _ in range(rounds):
                await measure(server, usbip, n // rounds, ours)
                await measure(server, plain, n // rounds, floor)
            report(scenario, ours, floor, await Layers.measure(scenario, n))
            for label, fraction in (("p50", 0.5), ("p99", 0.99)):
                result.figures.append(
                    Figure(f"USB/IP {scenario.name} {label} latency", ours.percentile_us(fraction),
                           "us", floor.percentile_us(fraction), f"asyncio TCP {label}", loop=loop)
                )  # fmt: skip
            result.figures.append(
                Figure(f"USB/IP {scenario.name} rt/s", ours.rate, "rt/s", floor.rate,
                       "asyncio TCP rt/s", loop=loop)
            )  # fmt: skip
        writer.close()
        await client.close()
    finally:
        await server.stop()
    return result


def run_usbip(count: int = 4000, rounds: int = 5, loop: LoopName = "asyncio") -> Section:
    """Measure every scenario on ``loop`` (both processes) and return the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return run_on(run(count, rounds, loop), loop)


def report(scenario: Scenario, ours: Measurement, floor: Measurement, layers: Layers) -> None:
    out_request, out_reply, in_request, in_reply = scenario.wire
    print()
    print(
        f"{scenario.name} ({ours.count} round trips; bytes per round trip: "
        f"{out_request} + {out_reply} + {in_request} + {in_reply})"
    )
    print(f"{'path':22} {'rt/s':>9} {'p50 us':>8} {'p99 us':>8} {'client cpu us':>14} "
          f"{'server cpu us':>14}")  # fmt: skip
    rows = [("USB/IP + CCID reader", ours), ("asyncio TCP, same bytes", floor)]
    for name, m in rows:
        print(
            f"{name:22} {m.rate:9,.0f} {m.percentile_us(0.5):8.0f} {m.percentile_us(0.99):8.0f} "
            f"{m.cpu_us('client'):14.1f} {m.cpu_us('server'):14.1f}"
        )
    print(
        f"{'ratio ours/baseline':22} {ours.rate / floor.rate:9.2f} "
        f"{ours.percentile_us(0.5) / floor.percentile_us(0.5):8.2f} "
        f"{ours.percentile_us(0.99) / floor.percentile_us(0.99):8.2f} "
        f"{ours.cpu_us('client') / floor.cpu_us('client'):14.2f} "
        f"{ours.cpu_us('server') / floor.cpu_us('server'):14.2f}"
    )
    server = ours.cpu_us("server")
    tcp = floor.cpu_us("server")
    adapter = server - tcp - layers.usbip_connection - layers.device
    print(
        f"server cpu {server:.0f} us = asyncio TCP floor {tcp:.0f} + USB/IP connection "
        f"{layers.usbip_connection:.0f} + reader {layers.reader:.0f} + CCIDDevice adapter and "
        f"card task {layers.device - layers.reader:.0f} + USB/IP server adapter {adapter:.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=4000, help="round trips per small APDU")
    parser.add_argument("--rounds", type=int, default=5, help="alternating blocks per path")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        run_on(serve_both(), args.loop)
    else:
        run_usbip(args.count, args.rounds, args.loop)


if __name__ == "__main__":
    main()
