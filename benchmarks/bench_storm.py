"""A reconnect storm: N VSCard clients, then N USB/IP importers, all connecting at once.

What happens when ``ccid-passthru`` restarts under N ``vscclient --reconnect``s, or a host reboots
its VMs: every client opens its connection in the same instant. One real ``ccid-passthru``
process is started with limits for N (``--max-clients``, ``--usbip-max-clients``); this process
opens N VSCard connections at once (each: Init, ReaderAdd, ATR, through the raw-protocol
generators of :mod:`benchmarks.loadgen`), waits until the N readers are exported, then imports
the N USB/IP devices at once (each: OP_REQ_IMPORT, SET_CONFIGURATION, IccPowerOn), and at the end
sends one APDU through every reader, end to end, to show each one works.

Reported, on each port: the time from the first connect to the last client up, and how many
clients had to retransmit (TCP_INFO's ``tcpi_total_retrans`` on each client's socket once it is
up: a full accept queue drops the client's SYN or its handshake's last ACK, and the client
comes back a second later; on loopback nothing else makes a retransmission). A client that is
refused or reset fails the run. Target: no client retransmits, i.e. every one of the storm
waited in the accept queue and was served from it. The kernel's ListenOverflows counter over
the storm is shown too (the whole network namespace: other processes' listeners count).

Run: ``python -m benchmarks.bench_storm [--clients 1000] [--loop asyncio|uvloop|both]``
(``--loop``: ccid-passthru's event loop; this process takes uvloop when installed).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from benchmarks.bench_scale import APDU, ATR, list_busids, load_loop, raise_fd_limit
from benchmarks.loadgen import CardProtocol, Recorder, UsbipProtocol
from benchmarks.report import Figure, Section, Target
from benchmarks.timing import LoopName, child_env, run, uvloop_available

#: ``tcpi_total_retrans`` in Linux's ``struct tcp_info`` (8 one-byte fields, then 23 u32s).
_TOTAL_RETRANS = struct.Struct("=I")
_TOTAL_RETRANS_OFFSET = 100

_P = TypeVar("_P", CardProtocol, UsbipProtocol)


@dataclass(frozen=True)
class StormPoint:
    clients: int
    vscard_seconds: float  # first connect to the last reader up (Init, ReaderAdd, ATR answered)
    usbip_seconds: float  # first connect to the last import up (imported, configured, powered)
    vscard_retransmitted: int  # clients that retransmitted (a dropped SYN or handshake ACK)
    usbip_retransmitted: int  # likewise, importers
    vscard_overflows: int  # the kernel's ListenOverflows over the VSCard storm (namespace-wide)
    usbip_overflows: int  # likewise over the USB/IP storm


def listen_overflows() -> int:
    """TcpExt ListenOverflows of this network namespace (accept queue full: SYN or ACK dropped)."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def retransmissions(transport: asyncio.BaseTransport) -> int:
    """Segments the connection's socket has retransmitted so far (SYN included)."""
    sock = transport.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return int(_TOTAL_RETRANS.unpack_from(info, _TOTAL_RETRANS_OFFSET)[0])


@dataclass
class Storm(Generic[_P]):
    """What :func:`connect_all` opened: the protocols and their transports."""

    protocols: list[_P]
    transports: list[asyncio.BaseTransport]

    def retransmitted(self) -> int:
        """How many of the connections retransmitted: a full accept queue dropped a packet."""
        return sum(1 for transport in self.transports if retransmissions(transport))


async def connect_all(port: int, factories: Sequence[Callable[[], _P]]) -> Storm[_P]:
    """One connection per factory to ``127.0.0.1:port``, all started in the same loop turn,
    returned once each is connected (TCP only: their ``ready`` may still be pending)."""
    loop = asyncio.get_running_loop()
    connections = await asyncio.gather(
        *(loop.create_connection(factory, "127.0.0.1", port) for factory in factories)
    )
    return Storm([protocol for _, protocol in connections], [t for t, _ in connections])


async def storm_cards(port: int, count: int) -> tuple[Storm[CardProtocol], float]:
    """``count`` VSCard clients at once, each with a reader and card: them and the seconds
    until the last is up."""
    started = time.perf_counter()
    cards = await connect_all(port, [functools.partial(CardProtocol, ATR, "storm")] * count)
    await asyncio.gather(*(card.ready for card in cards.protocols))
    return cards, time.perf_counter() - started


async def storm_imports(
    port: int, busids: Sequence[str], recorder: Recorder
) -> tuple[Storm[UsbipProtocol], float]:
    """Every device in ``busids`` imported at once and its card powered on: the importers and
    the seconds until the last is up."""
    started = time.perf_counter()
    factories = [functools.partial(UsbipProtocol, busid, APDU, recorder) for busid in busids]
    readers = await connect_all(port, factories)
    await asyncio.gather(*(reader.ready for reader in readers.protocols))
    return readers, time.perf_counter() - started


async def one_apdu_each(readers: Sequence[UsbipProtocol], recorder: Recorder) -> None:
    """One XfrBlock through every reader, end to end (each stops after its first answer)."""
    recorder.stopping = True
    for reader in readers:
        reader.start()
    await recorder.stopped


async def wait_exported(port: int, count: int) -> list[str]:
    """The busids once ``count`` devices are exported (another process: poll its answers)."""
    while len(busids := await list_busids(port)) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    return busids


async def measure(clients: int) -> StormPoint:
    from tests.daemons.passthru_process import running_passthru

    limit = str(clients + 16)
    extra = ["--max-clients", limit, "--max-clients-per-source", limit]
    extra += ["--usbip-max-clients", limit]
    async with running_passthru(extra) as passthru:
        async with asyncio.timeout(120):
            before = listen_overflows()
            cards, vscard_seconds = await storm_cards(passthru.vscard_port, clients)
            vscard_overflows = listen_overflows() - before
            busids = await wait_exported(passthru.usbip_port, clients)
            recorder = Recorder(clients, clients)
            before = listen_overflows()
            readers, usbip_seconds = await storm_imports(passthru.usbip_port, busids, recorder)
            usbip_overflows = listen_overflows() - before
            await one_apdu_each(readers.protocols, recorder)
            if recorder.error is not None:
                raise recorder.error
            point = StormPoint(
                clients,
                vscard_seconds,
                usbip_seconds,
                cards.retransmitted(),
                readers.retransmitted(),
                vscard_overflows,
                usbip_overflows,
            )
            for reader in readers.protocols:
                reader.close()
            for card in cards.protocols:
                card.close()
    return point


def section(point: StormPoint, loop: LoopName) -> Section:
    result = Section(
        f"storm ({loop})",
        f"{point.clients} VSCard clients, then {point.clients} USB/IP importers, connecting at "
        f"once to one ccid-passthru ({loop}); raw-protocol clients on {load_loop()}",
    )
    none = Target("at_most", 0, "value")
    n = point.clients
    # The counts carry no loop: run_all's uvloop-gain ratios would divide by their zeros.
    result.figures += [
        Figure(f"last of {n} VSCard clients up", point.vscard_seconds, "s", loop=loop),
        Figure(f"VSCard clients of {n} that retransmitted ({loop})",
               point.vscard_retransmitted, "clients", target=none,
               note=f"kernel listen overflows meanwhile: {point.vscard_overflows}"),
        Figure(f"last of {n} USB/IP imports up", point.usbip_seconds, "s", loop=loop),
        Figure(f"USB/IP importers of {n} that retransmitted ({loop})",
               point.usbip_retransmitted, "clients", target=none,
               note=f"kernel listen overflows meanwhile: {point.usbip_overflows}"),
    ]  # fmt: skip
    result.notes.append(
        "Every client served (a refused or reset one fails the run), and one APDU through each "
        "reader at the end. A client retransmits when a full accept queue dropped its SYN or "
        "handshake ACK: it then comes back a second later. Listen overflows are counted for "
        "the whole network namespace."
    )
    result.series = {"point": asdict(point)}
    return result


def run_storm(clients: int = 1000, loop: LoopName = "asyncio") -> Section:
    """The storm of ``clients`` on each port against ``ccid-passthru`` on ``loop``."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    raise_fd_limit()  # the passthru inherits it
    os.environ.update(child_env(loop))  # VSCARD_EVENT_LOOP: the passthru's loop
    return section(run(measure(clients), load_loop()), loop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000, help="clients on each port")
    parser.add_argument("--loop", choices=("asyncio", "uvloop", "both"), default="both",
                        help="ccid-passthru's event loop")  # fmt: skip
    args = parser.parse_args()
    loops: list[LoopName] = ["asyncio", "uvloop"] if args.loop == "both" else [args.loop]
    for loop in loops:
        if loop == "uvloop" and not uvloop_available():
            print("uvloop is not installed: skipped")
            continue
        result = run_storm(args.clients, loop)
        print(f"{result.name}: {result.description}")
        for figure in result.figures:
            value = f"{figure.value:.3f}" if figure.unit == "s" else f"{figure.value:,.0f}"
            line = f"  {figure.name}: {value} {figure.unit}"
            if figure.note:
                line += f" ({figure.note})"
            if figure.target is not None:
                line += f" (target {figure.target.describe()}: "
                line += "met)" if figure.met else "NOT met)"
            print(line)


if __name__ == "__main__":
    main()
