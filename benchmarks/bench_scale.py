"""One ``ccid-passthru`` process with N readers: memory per reader, aggregate APDU/s, latency.

Two load processes drive a real ``ccid-passthru`` over TCP: a card process opens N VSCard
connections (each adds one reader with a card that answers 90 00 at once); this process imports
the N USB/IP devices and powers each card on; then every reader keeps one XfrBlock in flight for
a fixed time (a closed loop: N APDUs outstanding at any moment). Both load processes are the
raw-protocol generators of :mod:`benchmarks.loadgen` (set up through the sans-IO cores, then
precomputed bytes and header checks only), on uvloop when it is installed whatever loop the
passthru runs, so as little of the machine as possible goes to the load.

Reported for each N: the passthru's RSS growth over its idle RSS, per reader (target <= 64 KiB),
the aggregate APDU/s (target >= 20,000), the p50/p99 latency of one APDU (target p99 <= 50 ms),
the CPU use (1.0 = one core busy) of the passthru, of each load process and of whatever else ran
on the machine meanwhile, in cores and per APDU, so it shows which process was the limit. With N
APDUs always in flight, the mean latency is N / rate (Little's law): at 1,000 readers the 50 ms
target needs 20,000 APDU/s.

Run: ``python -m benchmarks.bench_scale [--readers 1 10 100 1000] [--seconds 5] [--loop ...]``
(``--loop``: ccid-passthru's event loop).
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

from benchmarks.loadgen import Recorder, open_cards, open_readers
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import (
    LoopName,
    child_env,
    cpu_seconds,
    percentile,
    run,
    uvloop_available,
)
from ccid.usbip import list_devices

ATR = bytes.fromhex("3B808131FE458B")
APDU = bytes.fromhex("00CA010000")  # GET DATA: the card answers 90 00 to anything
RSS_TARGET_KIB = 64
RATE_TARGET = 20_000
P99_TARGET_MS = 50


def load_loop() -> LoopName:
    """The load processes' loop: uvloop whenever installed (the cheapest per APDU)."""
    return "uvloop" if uvloop_available() else "asyncio"


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
    cards_cpu: float = 0.0  # the card (VSCard) load process, likewise
    usbip_cpu: float = 0.0  # the USB/IP load process (this one), likewise
    machine_cpu: float = 0.0  # every process on the machine (from /proc/stat), likewise
    time_extensions: int = 0  # DataBlocks with bStatus 0x80 (the reader asked for more time)

    @property
    def other_cpu(self) -> float:
        """What processes outside the benchmark took meanwhile (a shared machine)."""
        return max(0.0, self.machine_cpu - self.passthru_cpu - self.cards_cpu - self.usbip_cpu)

    @property
    def rss_per_reader_kib(self) -> float:
        return (self.rss_loaded_kib - self.rss_idle_kib) / self.readers

    @property
    def rate(self) -> float:
        return self.apdus / self.seconds

    def _us_per_apdu(self, cpu: float) -> float:
        return cpu * self.seconds / self.apdus * 1e6 if self.apdus else 0.0

    @property
    def passthru_cpu_us_per_apdu(self) -> float:
        """ccid-passthru's CPU per APDU: one core's worth is its ceiling, whatever the load."""
        return self._us_per_apdu(self.passthru_cpu)

    @property
    def cards_cpu_us_per_apdu(self) -> float:
        return self._us_per_apdu(self.cards_cpu)

    @property
    def usbip_cpu_us_per_apdu(self) -> float:
        return self._us_per_apdu(self.usbip_cpu)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def machine_busy_seconds() -> float:
    """CPU seconds every core spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


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


async def list_busids(port: int) -> list[str]:
    return [device.busid for device in await list_devices(port=port)]


async def serve_cards(port: int, readers: int) -> None:
    """The card side (in its own process): ``readers`` VSCard connections, one reader and card
    each; prints ``ready``, then serves until stdin closes."""
    cards = await open_cards(port, readers, ATR)
    print("ready", flush=True)
    stdin = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    while await stdin.read(4096):
        pass
    for card in cards:
        card.close()


async def start_cards(port: int, readers: int) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "benchmarks.bench_scale", "--cards", str(port), str(readers),
        "--loop", load_loop(),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env=child_env(load_loop()),
    )  # fmt: skip
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 120)
    if line != b"ready\n":
        raise RuntimeError(f"the card process failed: {line!r}")
    return process


async def measure(readers: int, seconds: float) -> Point:
    from tests.daemons.passthru_process import running_passthru

    limit = str(readers + 16)
    extra = ["--max-clients", limit, "--max-clients-per-source", limit]
    extra += ["--usbip-max-clients", limit]
    async with running_passthru(extra) as passthru:
        pid = passthru.pid
        idle = await settled_rss(pid)
        cards = await start_cards(passthru.vscard_port, readers)
        async with asyncio.timeout(60):
            # Another process adds the readers: there is nothing to await but its answers.
            while len(busids := await list_busids(passthru.usbip_port)) < readers:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # Room for every latency at 60,000 APDU/s; more only grows the array.
        recorder = Recorder(readers, int(seconds * 60_000) + 1024)
        usbip = await open_readers(passthru.usbip_port, busids[:readers], APDU, recorder)
        for reader in usbip:
            reader.start()
        # A short warm-up, so buffers and caches every reader needs exist before we count.
        await asyncio.sleep(min(1.0, seconds / 4))
        pids = (pid, cards.pid, os.getpid())
        cpu_before = [cpu_seconds(p) for p in pids]
        machine_before = machine_busy_seconds()
        start_time = time.perf_counter()
        extensions_before = recorder.time_extensions
        recorder.recording = True
        await asyncio.sleep(seconds)
        recorder.recording = False
        extensions = recorder.time_extensions - extensions_before
        elapsed = time.perf_counter() - start_time
        passthru_cpu, cards_cpu, usbip_cpu = (
            (cpu_seconds(p) - before) / elapsed for p, before in zip(pids, cpu_before, strict=True)
        )
        machine_cpu = (machine_busy_seconds() - machine_before) / elapsed
        recorder.stopping = True
        await asyncio.wait_for(asyncio.shield(recorder.stopped), 30)
        if recorder.error is not None:
            raise recorder.error
        loaded = await settled_rss(pid)
        for reader in usbip:
            reader.close()
        assert cards.stdin is not None
        cards.stdin.close()
        await cards.wait()
    latencies = recorder.recorded()
    return Point(
        readers,
        idle,
        loaded,
        recorder.count,
        elapsed,
        percentile(latencies, 0.5) / 1e6,
        percentile(latencies, 0.99) / 1e6,
        passthru_cpu,
        cards_cpu=cards_cpu,
        usbip_cpu=usbip_cpu,
        machine_cpu=machine_cpu,
        time_extensions=extensions,
    )


def section(points: list[Point], loop: LoopName) -> Section:
    result = Section(
        f"scale ({loop})",
        f"one ccid-passthru ({loop}) with N readers (N VSCard connections, N USB/IP imports), "
        f"every reader keeping one APDU in flight; raw-protocol load generators on {load_loop()}",
    )
    top = points[-1]
    n = top.readers
    result.figures += [
        Figure(f"RSS per reader at {n} readers", top.rss_per_reader_kib, "KiB",
               target=Target("at_most", RSS_TARGET_KIB, "value"), loop=loop),
        Figure(f"aggregate APDU/s at {n} readers", top.rate, "APDU/s",
               target=Target("at_least", RATE_TARGET, "value"), loop=loop,
               note=f"CPU in cores: ccid-passthru {top.passthru_cpu:.2f}, load processes "
               f"{top.cards_cpu + top.usbip_cpu:.2f}, other processes {top.other_cpu:.2f}"),
        Figure(f"p99 APDU latency at {n} readers", top.p99_ms, "ms",
               target=Target("at_most", P99_TARGET_MS, "value"), loop=loop),
    ]  # fmt: skip
    result.figures.append(
        Figure(f"ccid-passthru CPU per APDU at {n} readers", top.passthru_cpu_us_per_apdu, "us",
               loop=loop, note=f"one core's ceiling: {1e6 / top.passthru_cpu_us_per_apdu:,.0f} "
               "APDU/s; the load generators share this machine's cores")
    )  # fmt: skip
    result.figures.append(
        Figure(f"load generators' CPU per APDU at {n} readers",
               top.cards_cpu_us_per_apdu + top.usbip_cpu_us_per_apdu, "us", loop=loop,
               note=f"card side {top.cards_cpu_us_per_apdu:.0f} us, USB/IP side "
               f"{top.usbip_cpu_us_per_apdu:.0f} us")
    )  # fmt: skip
    result.notes.append(
        "Load: benchmarks/loadgen.py, raw asyncio.Protocol generators (no task, future or "
        "stream per APDU); set up through the sans-IO cores, then precomputed messages with "
        "header checks. CPU per APDU of each process from /proc/PID/stat (utime + stime)."
    )
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
                "cards_cpu_us_per_apdu": point.cards_cpu_us_per_apdu,
                "usbip_cpu_us_per_apdu": point.usbip_cpu_us_per_apdu,
                "other_cpu": point.other_cpu,
            }
            for point in points
        ]
    }
    return result


def run_scale(
    readers: Sequence[int] = (1, 10, 100, 1000), seconds: float = 5, loop: LoopName = "asyncio"
) -> Section:
    """Measure every N in ``readers`` (ascending) with ``ccid-passthru`` on ``loop`` (the load
    generators take uvloop when installed) and return the figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    raise_fd_limit()  # the passthru inherits it
    os.environ.update(child_env(loop))  # VSCARD_EVENT_LOOP: the passthru's loop

    async def all_points() -> list[Point]:
        return [await measure(n, seconds) for n in readers]

    return section(run(all_points(), load_loop()), loop)


def print_section(result: Section) -> None:
    """The table: cpu columns in cores (1.0 = one core busy) and us per APDU; "load" is both load
    processes, "others" whatever else ran on the machine meanwhile, "t-ext" time extensions."""
    print(f"{result.name}: {result.description}")
    print(f"{'readers':>7} {'APDU/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'KiB/reader':>10} "
          f"{'idle MiB':>8} {'passthru cpu':>12} {'cpu us/APDU':>11} {'load cpu':>8} "
          f"{'cards us':>8} {'usbip us':>8} {'others':>6} {'t-ext':>5}")  # fmt: skip
    for row in result.series["points"]:
        print(
            f"{row['readers']:7} {row['rate']:8,.0f} {row['p50_ms']:7.2f} {row['p99_ms']:7.2f} "
            f"{row['rss_per_reader_kib']:10.1f} {row['rss_idle_kib'] / 1024:8.1f} "
            f"{row['passthru_cpu']:12.2f} {row['passthru_cpu_us_per_apdu']:11.0f} "
            f"{row['cards_cpu'] + row['usbip_cpu']:8.2f} {row['cards_cpu_us_per_apdu']:8.1f} "
            f"{row['usbip_cpu_us_per_apdu']:8.1f} {row['other_cpu']:6.2f} "
            f"{row['time_extensions']:5}"
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
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both",
                        help="ccid-passthru's event loop")  # fmt: skip
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
