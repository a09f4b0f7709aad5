"""Where a chain round trip goes, in system calls: ``strace`` on ``ccid-passthru`` and our
``vscclient`` over N round trips of ``bench_chain``'s path (USB/IP client -> ccid-passthru ->
vscclient -> its emulated CAC card -> back), counted per APDU.

The event loop's waits are split in two: a **wake-up** is an ``epoll_wait`` that may block
(the loop had nothing to run and slept until a socket was ready), a **turn** one with a zero
timeout (the loop had callbacks ready: another hop through the loop before the answer). Every
other call is counted by name (``sendto``/``write`` for writes, ``recvfrom``/``read`` for
reads). strace slows every call down, so the round trip time it prints is not the chain's:
``bench_chain`` is. Before tracing, as many untraced round trips give each process's exact CPU
time per round trip (``/proc/PID/task/*/schedstat``) and its blocking waits (voluntary context
switches): figures that other load on the machine hardly moves, unlike latencies.

Run: ``python -m benchmarks.profile_chain [--count 2000] [--loop asyncio|uvloop|both]
[--cpu 1]`` (needs ``strace`` and the right to trace one's own children).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from benchmarks.bench_chain import UsbipReader, wait_for_devices
from benchmarks.timing import LoopName, child_env, run, uvloop_available

#: ``PID name(args`` at the start of a strace line (``-f``: every thread), and the rest of a
#: call another thread's line cut off (``<unfinished ...>``).
_CALL = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. (\w+) resumed>(.*)$")
_UNFINISHED = " <unfinished ...>"
_EPOLL = ("epoll_wait", "epoll_pwait", "epoll_pwait2")
#: How epoll waits are counted besides their names.
_KINDS = ("wake-up", "turn", "cut")


@dataclass
class Counts:
    """System calls of one process (every thread) over ``apdus`` round trips."""

    process: str
    apdus: int
    calls: collections.Counter[str]

    def per_apdu(self, name: str) -> float:
        return self.calls[name] / self.apdus


def parse(text: str) -> collections.Counter[str]:
    """Calls by name in strace's output; epoll waits also as ``wake-up`` or ``turn`` (see the
    module)."""
    calls: collections.Counter[str] = collections.Counter()
    cut: dict[str, str] = {}  # pid -> the arguments of its unfinished call
    for line in text.splitlines():
        resumed = _RESUMED.match(line)
        if resumed is not None:
            pid, name, rest = resumed.groups()
            if name in _EPOLL:
                calls[_epoll_kind(name, cut.pop(pid, "") + rest)] += 1
            continue
        match = _CALL.match(line)
        if match is None:
            continue  # signals, exits
        pid, name, args = match.groups()
        calls[name] += 1
        if name in _EPOLL:
            if args.endswith(_UNFINISHED):
                cut[pid] = args.removesuffix(_UNFINISHED)
            else:
                calls[_epoll_kind(name, args)] += 1
    return calls


def _epoll_kind(name: str, args: str) -> str:
    """``turn`` for a wait with a zero timeout, ``wake-up`` for another, ``cut`` for one strace
    did not see the end of (it detached)."""
    args = re.sub(r"\[.*?\]", "[]", args.rsplit(")", 1)[0])  # the events it returned
    parts = args.split(",")
    if len(parts) < 4:
        return "cut"
    if name == "epoll_pwait2":
        nonblocking = "tv_sec=0, tv_nsec=0" in args
    else:  # epoll_wait(fd, events, maxevents, timeout[, sigmask, size])
        nonblocking = parts[3].strip() == "0"
    return "turn" if nonblocking else "wake-up"


@contextlib.asynccontextmanager
async def traced(pid: int, out: Path) -> AsyncIterator[None]:
    """``strace -f -p PID`` into ``out`` for the block: ready once it said it attached."""
    process = await asyncio.create_subprocess_exec(
        "strace", "-f", "-o", str(out), "-p", str(pid),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 30)
    if b"attached" not in line:
        raise RuntimeError(f"strace -p {pid}: {line.decode(errors='replace').strip()}")
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        await process.communicate()


def usage(pid: int) -> tuple[int, int]:
    """CPU nanoseconds (every thread, from the scheduler: exact, unlike /proc/PID/stat's
    ticks) and voluntary context switches (each a wait that blocked) of process ``pid``."""
    cpu_ns = switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        cpu_ns += int((task / "schedstat").read_text().split()[0])
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches += int(line.split()[1])
    return cpu_ns, switches


#: Per process, untraced: CPU microseconds and blocking waits per round trip.
Untraced = dict[str, tuple[float, float]]


async def profile(count: int, loop: LoopName) -> tuple[list[Counts], float, Untraced]:
    """Counts for ccid-passthru and vscclient over ``count`` traced round trips (after a
    warm-up and ``count`` untraced ones), the traced round trips' mean in microseconds, and
    the untraced ones' CPU time and blocking waits per round trip."""
    untraced: Untraced = {}
    from tests.daemons.passthru_process import running_passthru
    from tests.interop.guest.nssdb import make_nssdb
    from tests.interop.libcacard.vscclient import soft_card_args
    from tests.interop.our_vscclient import running_vscclient

    os.environ.update(child_env(loop))  # the daemons' loop (daemons/event_loop.py)
    with tempfile.TemporaryDirectory(prefix="vsc-") as work:
        nssdb = await asyncio.to_thread(make_nssdb, Path(work) / "db")
        async with contextlib.AsyncExitStack() as stack:
            passthru = await stack.enter_async_context(running_passthru())
            card = soft_card_args(nssdb.directory)
            args = ["-e", card, "127.0.0.1", str(passthru.vscard_port)]
            vscclient = await stack.enter_async_context(running_vscclient(args))
            (busid,) = await wait_for_devices(passthru.usbip_port, 1)
            reader = await UsbipReader.attach(busid, passthru.usbip_port)
            for _ in range(max(200, count // 10)):  # warm up
                await reader.transmit()
            pids = {"ccid-passthru": passthru.pid, "vscclient": vscclient.process.pid}
            # Untraced first: CPU time and blocking waits, exact, whatever else the machine runs.
            before = {name: usage(pid) for name, pid in pids.items()}
            for _ in range(count):
                await reader.transmit()
            for name, pid in pids.items():
                cpu_ns, switches = (a - b for a, b in zip(usage(pid), before[name], strict=True))
                untraced[name] = (cpu_ns / count / 1000, switches / count)
            outs = {name: Path(work) / f"{name}.strace" for name in pids}
            keep = os.environ.get("PROFILE_CHAIN_KEEP")
            async with contextlib.AsyncExitStack() as tracing:
                for name, pid in pids.items():
                    await tracing.enter_async_context(traced(pid, outs[name]))
                started = time.perf_counter()
                for _ in range(count):
                    await reader.transmit()
                elapsed = time.perf_counter() - started
            await reader.client.close()
            counts = [Counts(name, count, parse(outs[name].read_text())) for name in pids]
            if keep:  # the raw traces, to read
                for name, out in outs.items():
                    out.rename(Path(keep) / f"{loop}-{name}.strace")
    return counts, elapsed / count * 1e6, untraced


def print_counts(counts: list[Counts], loop: LoopName, mean_us: float, untraced: Untraced) -> None:
    print(f"{loop}, untraced: CPU us and blocking waits (voluntary switches) per round trip")
    for name, (cpu_us, switches) in untraced.items():
        print(f"  {name:16} {cpu_us:8.1f} us {switches:6.2f} waits")
    print(f"{loop}: system calls per APDU round trip (traced mean {mean_us:.0f} us)")
    names = sorted(
        {name for c in counts for name in c.calls},
        key=lambda name: (name not in _KINDS, -sum(c.calls[name] for c in counts)),
    )
    print(f"{'call':18}" + "".join(f"{c.process:>15}" for c in counts))
    for name in names:
        print(f"{name:18}" + "".join(f"{c.per_apdu(name):15.2f}" for c in counts))
    totals = [sum(v for k, v in c.calls.items() if k not in _KINDS) for c in counts]
    print(
        f"{'all calls':18}"
        + "".join(f"{t / c.apdus:15.2f}" for t, c in zip(totals, counts, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="traced round trips")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both")
    parser.add_argument("--cpu", type=int, help="pin every process to this CPU")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loops: list[LoopName] = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            print("uvloop is not installed: skipped")
            continue
        counts, mean_us, untraced = run(profile(args.count, loop), loop)
        print_counts(counts, loop, mean_us, untraced)


if __name__ == "__main__":
    main()
