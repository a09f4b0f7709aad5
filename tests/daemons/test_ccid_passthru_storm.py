"""A reconnect storm against a busy ccid-passthru: every client waits in the accept queue.

The daemon is stopped (SIGSTOP) while the storm comes, as one that is starting up or busy with
the storm's first clients: it accepts nothing, so only the kernel's accept queue holds the
clients. A queue of 100 (asyncio's default backlog) holds 101 of 300; the rest have their SYNs
dropped and never connect while the daemon is stopped. Sized for the limits, it holds them all,
and every one is served once the daemon runs again.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

import pytest

from benchmarks.bench_scale import APDU, ATR
from benchmarks.bench_storm import Storm, one_apdu_each, wait_exported
from benchmarks.loadgen import CardProtocol, Recorder, UsbipProtocol
from cardfloor.aio.stream import BACKLOG_HEADROOM, system_somaxconn

from .passthru_process import PassthruProcess, running_passthru

CLIENTS = 300


P = TypeVar("P", CardProtocol, UsbipProtocol)


@asynccontextmanager
async def stopped(passthru: PassthruProcess) -> AsyncIterator[None]:
    """The daemon stopped for the block: the kernel alone answers its listeners."""
    os.kill(passthru.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(passthru.pid, signal.SIGCONT)


async def storm_while_stopped(
    passthru: PassthruProcess, port: int, factories: Sequence[Callable[[], P]]
) -> Storm[P]:
    """One connection per factory at once, while the daemon is stopped: all must connect."""
    loop = asyncio.get_running_loop()
    async with stopped(passthru):
        tasks = [
            asyncio.ensure_future(loop.create_connection(factory, "127.0.0.1", port))
            for factory in factories
        ]
        # Generous: on loopback a queued connection completes at once.
        done, pending = await asyncio.wait(tasks, timeout=10)
        for task in pending:
            task.cancel()
    assert not pending, (
        f"{len(done)} of {len(tasks)} connected while the daemon could not accept: the accept "
        "queue overflowed and dropped the others' SYNs"
    )
    connections = [task.result() for task in tasks]
    return Storm([protocol for _, protocol in connections], [t for t, _ in connections])


@pytest.mark.skipif(
    system_somaxconn() < CLIENTS + BACKLOG_HEADROOM, reason="net.core.somaxconn cuts the backlog"
)
async def test_a_storm_of_300_on_each_port_waits_in_the_queue_and_is_all_served() -> None:
    limit = str(CLIENTS + 16)
    extra = ["--max-clients", limit, "--max-clients-per-source", limit]
    extra += ["--usbip-max-clients", limit]
    async with running_passthru(extra) as passthru:
        card = functools.partial(CardProtocol, ATR, "storm")
        cards = await storm_while_stopped(passthru, passthru.vscard_port, [card] * CLIENTS)
        await asyncio.wait_for(asyncio.gather(*(c.ready for c in cards.protocols)), 30)
        busids = await asyncio.wait_for(wait_exported(passthru.usbip_port, CLIENTS), 30)

        recorder = Recorder(CLIENTS, CLIENTS)
        importer = [functools.partial(UsbipProtocol, b, APDU, recorder) for b in busids]
        readers = await storm_while_stopped(passthru, passthru.usbip_port, importer)
        await asyncio.wait_for(asyncio.gather(*(r.ready for r in readers.protocols)), 30)
        # Served end to end: an APDU through every reader, from USB/IP to its VSCard client.
        await asyncio.wait_for(one_apdu_each(readers.protocols, recorder), 30)
        assert recorder.error is None
        # Nobody had to come back: no SYN (or handshake ACK) was dropped.
        storms: tuple[Storm[CardProtocol], Storm[UsbipProtocol]] = (cards, readers)
        assert [storm.retransmitted() for storm in storms] == [0, 0]
        for reader in readers.protocols:
            reader.close()
        for card_protocol in cards.protocols:
            card_protocol.close()
