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
from .selecting_host import SelectingHost

pcscd = fixtures.pcscd
vicc = fixtures.vicc

pytestmark = pytest.mark.interop


async def test_a_real_reader_and_its_card_reach_the_host(vicc: Vicc) -> None:
    host = SelectingHost()
    async with await vscard.serve(host.handle, "127.0.0.1", 0) as server:
        plan = Plan("127.0.0.1", server.port, None, (), vicc.reader_name, False, timeout=10)
        daemon = Daemon(plan, "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        added = await host.next_of(ReaderAdded)
        assert added == ReaderAdded(0, vicc.reader_name)
        assert await host.next_of(CardInserted) == CardInserted(0, ISO7816_ATR)
        assert await host.next_of(bytes) == b"\x90\x00"  # the APDU went to vicc unchanged
        # Pulling the card out of the real reader is seen by the host.
        await asyncio.to_thread(vicc.stop)
        assert await host.next_of(CardRemoved) == CardRemoved(0)
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0


async def test_compare_mode_answers_with_the_real_card_and_logs_differences(
    vicc: Vicc, tmp_path: Path
) -> None:
    """libcacard's -p: each APDU goes to the emulated card and to the real one (vicc here)."""
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    host = SelectingHost()
    async with await vscard.serve(host.handle, "127.0.0.1", 0) as server:
        args = ["-p", "--card", str(tmp_path / "card"), "127.0.0.1", str(server.port)]
        daemon = Daemon(plan_from_args(parse_args(args)), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        # vicc's answer reaches the host; the emulated CAC card has no MF and says otherwise.
        assert await host.next_of(bytes) == b"\x90\x00"
        compare = daemon.mirror.readers[0].card
        assert isinstance(compare, CompareCard)
        assert compare.differences == 1
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0
