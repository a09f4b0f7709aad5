"""``vscclient HOST PORT`` (no card option) with two PC/SC readers -> real QEMU 7.2
ccid-card-passthru -> a Linux guest's pcscd, libccid and OpenSC.

QEMU holds one reader and answers every ReaderAdd with reader id 0, so vscclient must show it
the reader that holds the card. The client's pcscd has vpcd's two readers; a ``cacard`` card
(served through vpcd, as a real card in a real reader) starts in one of them, the guest signs
with it, the card moves to the other reader, and the guest signs again: one guest boot.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.interop.guest import checks
from tests.interop.guest.runner import Guest, PassthruSetup

from . import opensc
from .our_vscclient import running_vscclient
from .pcsc import fixtures as pcsc_fixtures
from .pcsc.pcscd import Pcscd

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import StartGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

pcscd = pcsc_fixtures.pcscd


class MovingCard:
    """One card directory served on one vpcd slot at a time."""

    def __init__(self, pcscd: Pcscd, card_dir: Path, workdir: Path) -> None:
        self.pcscd, self.card_dir, self.workdir = pcscd, card_dir, workdir
        self.slot: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def insert(self, slot: int) -> None:
        """Serve the card on ``slot``; returns once PC/SC sees it there."""
        workdir = self.workdir / f"slot{slot}"
        workdir.mkdir(exist_ok=True)
        self._process = opensc.serve(self.pcscd, [str(self.card_dir)], workdir, slot)
        self.slot = slot

    def remove(self) -> None:
        """Stop serving; returns once PC/SC sees the reader empty."""
        if self._process is not None and self.slot is not None:
            opensc.stop(self.pcscd, self._process, self.slot)
        self._process, self.slot = None, None


@pytest.mark.parametrize(("first", "second"), [(0, 1), (1, 0)], ids=["0-then-1", "1-then-0"])
async def test_qemu_gets_the_reader_with_the_card_and_follows_the_card(
    start_guest: StartGuest, pcscd: Pcscd, card_dir: Path, tmp_path: Path, first: int, second: int
) -> None:
    card = MovingCard(pcscd, card_dir, tmp_path)
    await asyncio.to_thread(card.insert, first)
    try:
        async with start_guest(
            PassthruSetup(),
            [
                checks.reader_listed(),
                checks.card_driver(),
                checks.sign_verify("SHA256-RSA-PKCS"),
                checks.card_reinserted(),
                checks.sign_verify("SHA256-RSA-PKCS", key=2),
            ],
            timeout=150,
        ) as guest:
            assert guest.passthru_port is not None
            args = ["127.0.0.1", str(guest.passthru_port)]
            async with running_vscclient(args) as client:
                # Which reader QEMU sees is logged: the one with the card.
                sees = await client.event("vscclient.host_sees")
                while sees["name"] != pcscd.reader_name(first) or not sees["card"]:
                    sees = await client.event("vscclient.host_sees")

                async def remove_card(guest: Guest) -> None:
                    await asyncio.to_thread(card.remove)

                async def insert_card(guest: Guest) -> None:
                    await asyncio.to_thread(card.insert, second)
                    moved = await client.event("vscclient.host_sees")
                    assert (moved["name"], moved["card"]) == (pcscd.reader_name(second), True)

                guest.actions[checks.REMOVE_CARD] = remove_card
                guest.actions[checks.INSERT_CARD] = insert_card
                result = await guest.wait()
    finally:
        await asyncio.to_thread(card.remove)
    assert result.passed, result.report()
