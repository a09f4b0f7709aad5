"""One ``ccid-passthru`` process with N readers: memory per reader, aggregate APDU/s, latency.

Two load processes drive a real ``ccid-passthru``: a card process opens N VSCard connections
(each adds one reader with a trivial in-memory card that answers 90 00 at once, through the
``vscard`` library); this process imports the N USB/IP devices with our ``ccid.usbip`` client and
powers each card on; then every reader keeps one XfrBlock in flight for a fixed time (a closed
loop: N APDUs outstanding at any moment).

Reported for each N: the passthru's RSS growth over its idle RSS, per reader (target <= 64 KiB),
the aggregate APDU/s (target >= 20,000), the p50/p99 latency of one APDU (target p99 <= 50 ms),
and the passthru's CPU use (1.0 = one core busy) so it shows which process was the limit. With N
APDUs always in flight, the mean latency is N / rate (Little's law): at 1,000 readers the 50 ms
target needs 20,000 APDU/s.

Run: ``python -m benchmarks.bench_scale [--readers 1 10 100 1000] [--seconds 5] [--loop ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

import vscard
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import LoopName, child_env, percentile, run, uvloop_available
from ccid.codec import decode_response, encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, RDR_to_PC_DataBlock
from ccid.usb import SetupPacket
from ccid.usbip import Client, import_device, list_devices

ATR = bytes.fromhex("3B808131FE458B")
APDU = bytes.fromhex("00CA010000")  # GET DATA: the card below answers 90 00 to anything
XFR_BUFFER = 65556
#: Connections opened at once while setting up.
BATCH = 50
RSS_TARGET_KIB = 64
RATE_TARGET = 20_000
P99_TARGET_MS = 50


async def card(apdu: bytes) -> bytes:
    return b"\x90\x00"


@dataclass(frozen=True)
class Point:
    readers: int
    rss_idle_kib: int
    rss_loaded_kib: int
    apdus: int
    seconds: float
    p50_ms: float
    p99_ms: float
    passthru_cpu: float  # CPU seconds per wall second

    @property
    def rss_per_reader_kib(self) -> float:
        return (self.rss_loaded_kib - self.rss_idle_kib) / self.readers

    @property
    def rate(self) -> float:
        return self.apdus / self.seconds

    @property
    def passthru_cpu_us_per_apdu(self) -> float:
        """ccid-passthru's CPU per APDU: one core's worth is its ceiling, whatever the load."""
        return self.passthru_cpu * self.seconds / self.apdus * 1e6


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


async def settled_rss(pid: int) -> int:
    """RSS once three samples 0.1 s apart agree within 64 KiB."""
    samples = [rss_kib(pid)]
    while len(samples) < 3 or max(samples[-3:]) - min(samples[-3:]) > 64:
        await asyncio.sleep(0.1)
        samples.append(rss_kib(pid))
    return samples[-1]


async def attach(busid: str, port: int) -> Client:
    client = await import_device(busid, port=port)
    await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION(1)
    await client.transfer_out(BULK_OUT, encode(PC_to_RDR_IccPowerOn(0, 0)))
    await client.transfer_in(BULK_IN, XFR_BUFFER)
    return client


async def xfr_loop(client: Client, until: float, latencies: list[int]) -> int:
    """XfrBlocks back to back on one reader until ``until``; returns how many."""
    wire = encode(PC_to_RDR_XfrBlock(0, 1, APDU))
    done = 0
    while time.perf_counter() < until:
        began = time.perf_counter_ns()
        await client.transfer_out(BULK_OUT, wire)
        while True:
            answer = decode_response(await client.transfer_in(BULK_IN, XFR_BUFFER))
            assert isinstance(answer, RDR_to_PC_DataBlock), answer
            if not answer.bStatus & 0x80:  # not a time extension
                break
        latencies.append(time.perf_counter_ns() - began)
        done += 1
    return done


async def list_busids(port: int) -> list[str]:
    return [device.busid for device in await list_devices(port=port)]


async def serve_cards(port: int, readers: int) -> None:
    """The card side (in its own process): ``readers`` VSCard connections, one reader and card
    each; prints ``ready``, then serves until stdin closes."""
    clients: list[vscard.Client] = []

    async def connect() -> vscard.Client:
        client = await vscard.connect("127.0.0.1", port)
        reader = await client.add_reader("scale", transmit=card)
        await reader.insert(ATR)
        return client

    for start in range(0, readers, BATCH):
        clients += await asyncio.gather(*(connect() for _ in range(min(BATCH, readers - start))))
    print("ready", flush=True)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while await stdin.read(4096):
        pass
    await asyncio.gather(*(client.close() for client in clients))


async def start_cards(port: int, readers: int, loop: LoopName) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "benchmarks.bench_scale", "--cards", str(port), str(readers),
        "--loop", loop,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env(loop),
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    if line != b"ready\n":
        raise RuntimeError(f"the card process failed: {line!r}")
    return process


async def measure(readers: int, seconds: float, loop: LoopName) -> Point:
    from tests.daemons.passthru_process import running_passthru

    limit = str(readers + 16)
    extra = ["--max-clients", limit, "--max-clients-per-source", limit]
    extra += ["--usbip-max-clients", limit]
    async with running_passthru(extra) as passthru:
        pid = passthru.pid
        idle = await settled_rss(pid)
        cards = await start_cards(passthru.vscard_port, readers, loop)
        async with asyncio.timeout(60):
            # Another process adds the readers: there is nothing to await but its answers.
            while len(busids := await list_busids(passthru.usbip_port)) < readers:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        usbip_clients: list[Client] = []
        for start in range(0, readers, BATCH):
            usbip_clients += await asyncio.gather(
                *(attach(busid, passthru.usbip_port) for busid in busids[start : start + BATCH])
            )
        latencies: list[int] = []
        # A short warm-up, so buffers and caches every reader needs exist before we count.
        warm = time.perf_counter() + min(1.0, seconds / 4)
        await asyncio.gather(*(xfr_loop(c, warm, []) for c in usbip_clients))
        cpu_before = cpu_seconds(pid)
        start_time = time.perf_counter()
        until = start_time + seconds
        counts = await asyncio.gather(*(xfr_loop(c, until, latencies) for c in usbip_clients))
        elapsed = time.perf_counter() - start_time
        cpu = (cpu_seconds(pid) - cpu_before) / elapsed
        loaded = await settled_rss(pid)
        for usbip_client in usbip_clients:
            await usbip_client.close()
        assert cards.stdin is not None
        cards.stdin.close()
        await cards.wait()
    return Point(
        readers,
        idle,
        loaded,
        sum(counts),
        elapsed,
        percentile(latencies, 0.5) / 1e6,
        percentile(latencies, 0.99) / 1e6,
        cpu,
    )


def section(points: list[Point], loop: LoopName) -> Section:
    result = Section(
        f"scale ({loop})",
        "one ccid-passthru with N readers (N VSCard connections, N USB/IP imports), every "
        "reader keeping one APDU in flight",
    )
    top = points[-1]
    n = top.readers
    result.figures += [
        Figure(f"RSS per reader at {n} readers", top.rss_per_reader_kib, "KiB",
               target=Target("at_most", RSS_TARGET_KIB, "value"), loop=loop),
        Figure(f"aggregate APDU/s at {n} readers", top.rate, "APDU/s",
               target=Target("at_least", RATE_TARGET, "value"), loop=loop,
               note=f"ccid-passthru CPU {top.passthru_cpu:.2f} cores"),
        Figure(f"p99 APDU latency at {n} readers", top.p99_ms, "ms",
               target=Target("at_most", P99_TARGET_MS, "value"), loop=loop),
    ]  # fmt: skip
    result.figures.append(
        Figure(f"ccid-passthru CPU per APDU at {n} readers", top.passthru_cpu_us_per_apdu, "us",
               loop=loop, note=f"one core's ceiling: {1e6 / top.passthru_cpu_us_per_apdu:,.0f} "
               "APDU/s; the load generators share this machine's other core")
    )  # fmt: skip
    best = max(points, key=lambda point: point.rate)
    if best is not top:
        result.figures.append(
            Figure(f"best aggregate APDU/s ({best.readers} readers)", best.rate, "APDU/s",
                   target=Target("at_least", RATE_TARGET, "value"), loop=loop)
        )  # fmt: skip
    result.series = {
        "points": [
            {
                **asdict(point),
                "rss_per_reader_kib": point.rss_per_reader_kib,
                "rate": point.rate,
                "passthru_cpu_us_per_apdu": point.passthru_cpu_us_per_apdu,
            }
            for point in points
        ]
    }
    return result


def run_scale(
    readers: Sequence[int] = (1, 10, 100, 1000), seconds: float = 5, loop: LoopName = "asyncio"
) -> Section:
    """Measure every N in ``readers`` (ascending) on ``loop`` and return the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    raise_fd_limit()  # the passthru inherits it
    os.environ.update(child_env(loop))

    async def all_points() -> list[Point]:
        return [await measure(n, seconds, loop) for n in readers]

    return section(run(all_points(), loop), loop)


def print_section(result: Section) -> None:
    print(f"{result.name}: {result.description}")
    print(f"{'readers':>7} {'APDU/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'KiB/reader':>10} "
          f"{'idle MiB':>8} {'passthru cpu':>12} {'cpu us/APDU':>11}")  # fmt: skip
    for row in result.series["points"]:
        print(
            f"{row['readers']:7} {row['rate']:8,.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
            f"{row['rss_per_reader_kib']:10.1f} {row['rss_idle_kib'] / 1024:8.1f} "
            f"{row['passthru_cpu']:12.2f} {row['passthru_cpu_us_per_apdu']:11.0f}"
        )
    for figure in result.figures:
        if figure.target is not None:
            verdict = "met" if figure.met else "NOT met"
            print(f"  {figure.name}: {figure.value:,.1f} {figure.unit} "
                  f"(target {figure.target.describe()}: {verdict})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--seconds", type=float, default=5, help="time under load per N")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    parser.add_argument("--cards", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cards is not None:
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        run(serve_cards(*args.cards), "asyncio" if args.loop == "both" else args.loop)
        return
    loops: list[LoopName] = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            print("uvloop is not installed: skipped")
            continue
        print_section(run_scale(sorted(args.readers), args.seconds, loop))


if __name__ == "__main__":
    main()
