"""vscclient --pcsc forwards a real PC/SC reader: pcscd + vpcd + vicc -> vscclient -> our host."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

import vscard
from daemons.vscclient import Daemon, Plan
from vscard import CardInserted, CardRemoved, ReaderAdded

from .pcsc import fixtures
from .pcsc.vicc import ISO7816_ATR, Vicc

pcscd = fixtures.pcscd
vicc = fixtures.vicc

pytestmark = pytest.mark.interop

SELECT_MF = bytes.fromhex("00A4000C023F00")  # P2=0C: vicc's iso7816 card breaks on P2=00


async def test_a_real_reader_and_its_card_reach_the_host(vicc: Vicc) -> None:
    events: asyncio.Queue[object] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            await events.put(event)
            if isinstance(event, CardInserted):
                await events.put(await session.transmit(event.reader_id, SELECT_MF))

    async def next_of(kind: type) -> object:
        while True:
            event = await asyncio.wait_for(events.get(), 20)
            if isinstance(event, kind):
                return event

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        plan = Plan("127.0.0.1", server.port, None, (), vicc.reader_name, False, timeout=10)
        daemon = Daemon(plan, "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        added = await next_of(ReaderAdded)
        assert added == ReaderAdded(0, vicc.reader_name)
        assert await next_of(CardInserted) == CardInserted(0, ISO7816_ATR)
        assert await next_of(bytes) == b"\x90\x00"  # the APDU went to vicc unchanged
        # Pulling the card out of the real reader is seen by the host.
        await asyncio.to_thread(vicc.stop)
        assert await next_of(CardRemoved) == CardRemoved(0)
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0
