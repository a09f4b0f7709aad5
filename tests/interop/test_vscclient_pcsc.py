"""vscclient --pcsc forwards a real PC/SC reader: pcscd + vpcd + vicc -> vscclient -> our host."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

import vscard
from cacard import CardRequest, generate_card
from daemons.compare_card import CompareCard
from daemons.vscclient import Daemon, Plan, parse_args, plan_from_args
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


async def test_compare_mode_answers_with_the_real_card_and_logs_differences(
    vicc: Vicc, tmp_path: Path
) -> None:
    """libcacard's -p: each APDU goes to the emulated card and to the real one (vicc here)."""
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    responses: asyncio.Queue[bytes] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                await responses.put(await session.transmit(event.reader_id, SELECT_MF))

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        args = ["-p", "--card", str(tmp_path / "card"), "127.0.0.1", str(server.port)]
        daemon = Daemon(plan_from_args(parse_args(args)), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        # vicc's answer reaches the host; the emulated CAC card has no MF and says otherwise.
        assert await asyncio.wait_for(responses.get(), 20) == b"\x90\x00"
        compare = daemon.mirror.readers[0].card
        assert isinstance(compare, CompareCard)
        assert compare.differences == 1
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0
