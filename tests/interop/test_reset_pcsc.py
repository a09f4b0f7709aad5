"""A reset reaches a real card: an importer's power cycle through a running ccid-passthru and a
running ``vscclient --pcsc`` resets the card in pcscd (``SCardReconnect`` with
``SCARD_RESET_CARD``), so the PIN the importer verified is verified no more.

The real card is a ``cacard serve-vpcd`` card (CAC+PIV) in the private pcscd. vscclient runs
with ``--pcsc-keep-state`` so that its own handover resets stay out of the way: what resets the
card here is the importer's power cycle, and only it (the same steps without one keep the PIN).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cacard import CardRequest, generate_card
from cacard.atr import CAC_ATR_T1
from cacard.profile import Applications
from tests.daemons.passthru_process import running_passthru
from tests.daemons.test_reset_passthru import imported, log_in, verify_status

from . import opensc
from .our_vscclient import running_vscclient
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd

pcscd = fixtures.pcscd

pytestmark = pytest.mark.interop


@pytest.fixture
def real_card(pcscd: Pcscd, tmp_path: Path) -> Iterator[str]:
    """A CAC+PIV card served in vpcd slot 0; yields its reader's name."""
    directory = tmp_path / "card"
    request = CardRequest(key_size=1024, pin_iterations=1, applications=Applications.CAC_PIV)
    generate_card(directory, request)
    process = opensc.serve(pcscd, [str(directory)], tmp_path, 0)
    try:
        yield pcscd.reader_name(0)
    finally:
        opensc.stop(pcscd, process, 0)


async def test_a_power_cycle_resets_the_real_card_behind_vscclient_pcsc(real_card: str) -> None:
    async with running_passthru(capture_log=True) as passthru:
        argv = [f"--pcsc={real_card}", "--pcsc-keep-state", "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(argv) as client, imported(passthru) as importer:
            assert await importer.power_on() == CAC_ATR_T1
            await log_in(importer)
            # Without a power cycle the card keeps the PIN (nothing else resets it here).
            assert await verify_status(importer) == 0x9000
            await importer.power_off()
            await importer.power_on()
            reset = await client.event("vscclient.card_reset")
            assert reset["protocol"] == 1
            assert await verify_status(importer) == 0x63C3
