"""``ccid-passthru --card DIR`` with a PIV card in the Linux guest, no client at all: the
guest's ``usbip attach`` -> vhci-hcd -> pcscd -> libccid (T=1, the card offers it) -> OpenSC's
PIV driver, which signs with the PIV Authentication key; the PIN guard in ccid-passthru keeps
the card's last PIN try from a guest looping wrong PINs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cacard import CardRequest, generate_card
from cacard.atr import PIV_ATR
from cacard.profile import Applications
from cacard.store import CardStore
from tests.daemons.passthru_process import running_passthru
from tests.interop.guest import checks
from tests.interop.guest.checks import Check
from tests.interop.guest.runner import UsbipSetup

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import RunGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

BUSID = "1-1"  # the first reader ccid-passthru exports
#: OpenSC's PKCS#11 ID of the PIV Authentication key (9A) (OpenSC, pkcs15-piv.c).
PIV_AUTHENTICATION_ID = "01"


def wrong_pins(times: int) -> Check:
    """``pkcs11-tool --login`` with a wrong PIN ``times`` times: each must fail."""
    body = f"""
i=0
while [ $i -lt {times} ]; do
    i=$((i + 1))
    out=$(pkcs11-tool --login --pin 11111111 -O 2>&1) && {{ echo "login $i passed"; exit 1; }}
    echo "login $i: $(echo "$out" | grep -o 'CKR_[A-Z_]*' | head -n 1)"
done
"""
    return Check(f"wrong-pins.{times}", body)


async def test_a_piv_card_alone_in_ccid_passthru(run_guest: RunGuest, tmp_path: Path) -> None:
    directory = tmp_path / "card"
    # What "cacard new DIR --profile piv" makes: RSA-2048, PIN 77777777, 3 tries.
    request = CardRequest(applications=Applications.PIV)
    await asyncio.to_thread(generate_card, directory, request)
    assert CardStore(directory).load_profile().atr == PIV_ATR
    async with running_passthru(["--card", str(directory), "--pin-guard", "1"]) as passthru:
        result = await run_guest(
            UsbipSetup(passthru.usbip_port, BUSID),
            [
                checks.reader_listed(),
                checks.atr(PIV_ATR),
                checks.card_driver(checks.PIV_DRIVER),
                checks.sign_verify("SHA256-RSA-PKCS", key_id=PIV_AUTHENTICATION_ID),
                wrong_pins(4),
            ],
            timeout=180,
        )
    assert result.passed, result.report()
    assert CardStore(directory).load_state().pin.tries_remaining == 1
