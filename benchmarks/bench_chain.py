"""APDU round trips through the whole chain: our USB/IP client -> a real ``ccid-passthru``
process -> a ``vscclient`` process -> its emulated CAC card -> back.

Three paths run side by side against one ``ccid-passthru``, in alternating blocks so drift on a
shared machine hits all alike:

- **ours**: our ``vscclient -e 'db=... soft=(...)'`` serving a soft CAC card from an NSS DB
  with three RSA-2048 certificates;
- **libcacard**: libcacard's C ``vscclient`` (built from Debian's source by
  ``tests/interop/libcacard``) serving a soft CAC card from an NSS DB with three RSA-2048
  certificates: the same DB, so the same certificates and keys (target: ours <= 1.0x its
  latency);
- **floor**: a two-hop raw asyncio relay (client -> relay process -> echo process, see
  ``benchmarks/relay.py``) moving messages of the same sizes (target: ours <= 1.5x).

One round trip is what the kernel does for libccid: CMD_SUBMIT bulk OUT with the XfrBlock, its
RET_SUBMIT, CMD_SUBMIT bulk IN, its RET_SUBMIT with the DataBlock (time extensions skipped).
The APDU is a SELECT of the CAC PKI applet, so the card's own work is negligible. Latencies are
pooled over all blocks; the rate is the best block's.

Run: ``python -m benchmarks.bench_chain [--count 3000] [--loop asyncio|uvloop] [--cpu 1]``
(``--cpu`` pins every process of the chain to that CPU, as ``taskset -c`` would).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from benchmarks.relay import FloorClient
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import (
    LoopName,
    child_env,
    cpu_seconds,
    percentile,
    run,
    uvloop_available,
)
from ccid.codec import decode_response, encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, RDR_to_PC_DataBlock
from ccid.usb import SetupPacket
from ccid.usbip import USBIPClient, import_device, list_devices
from ccid.usbip.constants import URB_HEADER_SIZE

#: SELECT the CAC PKI applet (P2=0C: no FCI back), as OpenSC's CAC driver does.
SELECT_PKI = bytes.fromhex("00A4040C07A0000000790100")
XFR_BUFFER = 65556
CCID_HEADER = 10
VSCARD_HEADER = 12
PATHS = ("ours", "libcacard", "floor")

RoundTrip = Callable[[], Awaitable[object]]


@dataclass
class PathResult:
    latencies_ns: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    #: CPU seconds over every block of the card side (a vscclient, or the floor's echo) and of
    #: the middle (ccid-passthru, or the floor's relay).
    card_cpu_s: float = 0.0
    middle_cpu_s: float = 0.0

    def cpu_us(self, seconds: float) -> float:
        """CPU microseconds per round trip."""
        return seconds / len(self.latencies_ns) * 1e6

    def p(self, fraction: float) -> float:
        """A latency percentile in microseconds."""
        return percentile(self.latencies_ns, fraction) / 1000

    @property
    def rate(self) -> float:
        return max(self.rates)


class UsbipReader:
    """One imported reader, powered on, answering XfrBlocks."""

    def __init__(self, client: USBIPClient) -> None:
        self.client = client
        self._wire = encode(PC_to_RDR_XfrBlock(0, 1, SELECT_PKI))

    @classmethod
    async def attach(cls, busid: str, port: int) -> UsbipReader:
        client = await import_device(busid, port=port)
        await client.control(SetupPacket(0x00, 9, 1, 0, 0))  # SET_CONFIGURATION(1)
        await client.transfer_out(BULK_OUT, encode(PC_to_RDR_IccPowerOn(0, 0)))
        await client.transfer_in(BULK_IN, XFR_BUFFER)
        return cls(client)

    async def transmit(self) -> bytes:
        await self.client.transfer_out(BULK_OUT, self._wire)
        while True:
            answer = decode_response(await self.client.transfer_in(BULK_IN, XFR_BUFFER))
            assert isinstance(answer, RDR_to_PC_DataBlock), answer
            if not answer.bStatus & 0x80:  # not a time extension
                return answer.abData


@contextlib.asynccontextmanager
async def helper(args: list[str], loop: LoopName) -> AsyncIterator[tuple[int, int]]:
    """``python -m benchmarks.relay ARGS``: yields (the port it prints, its pid); stops when
    stdin closes."""
    process = await asyncio.create_subprocess_exec(
        "setpriv", "--pdeathsig", "KILL", "--",
        sys.executable, "-m", "benchmarks.relay", *args, "--loop", loop,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=child_env(loop),
    )  # fmt: skip
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        yield int(await asyncio.wait_for(process.stdout.readline(), 30)), process.pid
    finally:
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def wait_for_devices(port: int, count: int, timeout: float = 30) -> list[str]:
    async with asyncio.timeout(timeout):
        while True:
            busids = [device.busid for device in await list_devices(port=port)]
            if len(busids) >= count:
                return busids
            await asyncio.sleep(0.05)


async def chain(count: int, rounds: int, loop: LoopName) -> dict[str, PathResult]:
    # Imported here: tests/ is only needed by this benchmark.
    from tests.daemons.passthru_process import running_passthru
    from tests.interop.guest.nssdb import make_nssdb
    from tests.interop.libcacard.vscclient import (
        build_vscclient,
        missing_host_prerequisites,
        run_vscclient,
        soft_card_args,
    )
    from tests.interop.our_vscclient import running_vscclient

    os.environ.update(child_env(loop))  # the daemons' loop (daemons/event_loop.py)
    results = {name: PathResult() for name in PATHS}
    missing = missing_host_prerequisites()
    binary = None if missing else await asyncio.to_thread(build_vscclient)
    with tempfile.TemporaryDirectory(prefix="vsc-") as work:  # short: libcacard's buffers
        nssdb = await asyncio.to_thread(make_nssdb, Path(work) / "db")
        async with contextlib.AsyncExitStack() as stack:
            passthru = await stack.enter_async_context(running_passthru())
            port = passthru.vscard_port
            # Both vscclients serve the same certificates and keys, from the same NSS DB.
            card = soft_card_args(nssdb.directory)
            ours_args = ["-e", card, "127.0.0.1", str(port)]
            ours_process = await stack.enter_async_context(running_vscclient(ours_args))
            pids = {"ours": (ours_process.process.pid, passthru.pid)}
            (ours_busid,) = await wait_for_devices(passthru.usbip_port, 1)
            paths: dict[str, RoundTrip] = {}
            ours = await UsbipReader.attach(ours_busid, passthru.usbip_port)
            response = await ours.transmit()
            assert response[-2:] == b"\x90\x00", response.hex()
            paths["ours"] = ours.transmit
            if binary is not None:
                theirs_process = await stack.enter_async_context(
                    run_vscclient(binary, "127.0.0.1", port, card, debug=0)
                )
                pids["libcacard"] = (theirs_process.process.pid, passthru.pid)
                busids = await wait_for_devices(passthru.usbip_port, 2)
                (theirs_busid,) = [busid for busid in busids if busid != ours_busid]
                theirs = await UsbipReader.attach(theirs_busid, passthru.usbip_port)
                their_response = await theirs.transmit()
                # libcacard ignores P2=0C and offers its FCI (61 0D): still one cheap APDU,
                # two bytes back like ours.
                assert len(their_response) == len(response), their_response.hex()
                paths["libcacard"] = theirs.transmit
            echo_port, echo_pid = await stack.enter_async_context(helper(["echo"], loop))
            relay_port, relay_pid = await stack.enter_async_context(
                helper(["relay", str(echo_port)], loop)
            )
            pids["floor"] = (echo_pid, relay_pid)
            wire = (
                URB_HEADER_SIZE + CCID_HEADER + len(SELECT_PKI),
                URB_HEADER_SIZE,
                URB_HEADER_SIZE,
                URB_HEADER_SIZE + CCID_HEADER + len(response),
            )
            hop = (VSCARD_HEADER + len(SELECT_PKI), VSCARD_HEADER + len(response))
            floor = await FloorClient.connect(relay_port, wire, hop)
            paths["floor"] = floor.round_trip
            for round_trip in paths.values():  # warm up
                for _ in range(max(20, count // 20)):
                    await round_trip()
            block = max(1, count // rounds)
            for _ in range(rounds):
                for name, round_trip in paths.items():
                    result = results[name]
                    card_pid, middle_pid = pids[name]
                    card_cpu, middle_cpu = cpu_seconds(card_pid), cpu_seconds(middle_pid)
                    start = time.perf_counter_ns()
                    for _ in range(block):
                        began = time.perf_counter_ns()
                        await round_trip()
                        result.latencies_ns.append(time.perf_counter_ns() - began)
                    elapsed = time.perf_counter_ns() - start
                    result.rates.append(block / (elapsed / 1e9))
                    result.card_cpu_s += cpu_seconds(card_pid) - card_cpu
                    result.middle_cpu_s += cpu_seconds(middle_pid) - middle_cpu
            floor.close()
            await ours.client.close()
            if "libcacard" in paths:
                await theirs.client.close()
    return {name: result for name, result in results.items() if result.rates}


def section(results: dict[str, PathResult], loop: LoopName) -> Section:
    result = Section(
        f"chain ({loop})",
        "APDU round trip (SELECT PKI applet): USB/IP client -> ccid-passthru -> vscclient -> "
        "card -> back, against libcacard's C vscclient and a 2-hop raw asyncio relay floor",
    )
    ours = results["ours"]
    for name, target in (("libcacard", 1.0), ("floor", 1.5)):
        theirs = results.get(name)
        if theirs is None:
            result.notes.append(f"{name}: not measured (its prerequisites are missing)")
            continue
        for label, fraction in (("p50", 0.5), ("p99", 0.99)):
            result.figures.append(
                Figure(
                    f"chain {label} latency vs {name}",
                    ours.p(fraction),
                    "us",
                    theirs.p(fraction),
                    f"{name} {label}",
                    Target("at_most", target),
                    loop,
                )
            )
        result.figures.append(
            Figure(
                f"chain round trips/s vs {name}",
                ours.rate,
                "rt/s",
                theirs.rate,
                f"{name} rt/s",
                None,
                loop,
            )
        )
    result.series = {
        name: {
            "p50_us": r.p(0.5),
            "p99_us": r.p(0.99),
            "rt_per_s": r.rate,
            "count": len(r.latencies_ns),
            "card_side_cpu_us": r.cpu_us(r.card_cpu_s),
            "middle_cpu_us": r.cpu_us(r.middle_cpu_s),
        }
        for name, r in results.items()
    }
    return result


def run_chain(count: int = 3000, rounds: int = 6, loop: LoopName = "asyncio") -> Section:
    """Measure the chain on ``loop`` (for every process of ours) and return its figures."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    return section(run(chain(count, rounds, loop), loop), loop)


def print_section(result: Section) -> None:
    print(f"{result.name}: {result.description}")
    print(
        f"{'path':10} {'rt/s':>8} {'p50 us':>8} {'p99 us':>8} {'n':>6} "
        f"{'card side cpu us/rt':>20} {'middle cpu us/rt':>17}"
    )
    for name, row in result.series.items():
        print(
            f"{name:10} {row['rt_per_s']:8,.0f} {row['p50_us']:8.0f} {row['p99_us']:8.0f} "
            f"{row['count']:6} {row['card_side_cpu_us']:20.0f} {row['middle_cpu_us']:17.0f}"
        )
    for figure in result.figures:
        if figure.target is not None:
            verdict = "met" if figure.met else "NOT met"
            target = figure.target.describe()
            print(f"  {figure.name}: {figure.ratio:.2f}x (target {target}: {verdict})")
    for note in result.notes:
        print(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="round trips per path")
    parser.add_argument("--rounds", type=int, default=6, help="alternating blocks per path")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    parser.add_argument("--cpu", type=int, help="pin every process to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loops: list[LoopName] = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            print("uvloop is not installed: skipped")
            continue
        print_section(run_chain(args.count, args.rounds, loop))


if __name__ == "__main__":
    main()
