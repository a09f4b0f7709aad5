"""A reset reaches a real card: an importer's power cycle through a running ccid-passthru and a
running ``vscclient --pcsc`` resets the card in pcscd (``SCardReconnect`` with
``SCARD_RESET_CARD``), so the PIN the importer verified is verified no more.

The real card is a ``cacard serve-vpcd`` card (CAC+PIV) in the private pcscd. vscclient runs
with ``--pcsc-keep-state`` so that its own handover resets stay out of the way: what resets the
card here is the importer's power cycle, and only it (the same steps without one keep the PIN).
"""

from __future__ import annotations

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cacard.atr import CAC_ATR_T1
from tests.daemons.passthru_process import running_passthru
from tests.daemons.test_reset_passthru import imported, log_in, verify_status

from . import test_pcsc_sharing as sharing
from .our_vscclient import running_vscclient
from .pcsc import fixtures

pcscd = fixtures.pcscd

pytestmark = pytest.mark.interop


# The sharing tests' CAC+PIV card served in vpcd slot 0, bound here (importing the fixtures by
# name makes ruff see each test argument as a redefinition).
piv_card_dir = sharing.piv_card_dir
real_card = sharing.real_card


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
