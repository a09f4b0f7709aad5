"""The PIN guard: a guest looping wrong PINs cannot block the card vscclient forwards.

The card is a real-card stand-in behind the host's pcscd (a ``cacard`` card served through
vpcd, with a persistent retry counter of 3); vscclient --pcsc forwards it to QEMU; the guest
tries a wrong PIN six times.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cacard import CardRequest, CardStore, generate_card
from daemons.card_guard import CardGuard
from daemons.vscclient import Daemon, Plan
from tests.interop.guest import checks
from tests.interop.guest.checks import Check
from tests.interop.guest.runner import PassthruSetup

from . import opensc
from .pcsc import fixtures as pcsc_fixtures
from .pcsc.pcscd import Pcscd

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import StartGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

pcscd = pcsc_fixtures.pcscd

SLOT = 1

WRONG_PINS = Check(
    "wrong-pin-loop",
    """
for i in 1 2 3 4 5 6; do
    pkcs11-tool --login --pin 11111111 --list-objects >/dev/null 2>$VS/err
    echo "try $i: $(grep -o 'CKR_[A-Z_]*' $VS/err | head -1)"
done
""",
)


async def test_a_guest_looping_wrong_pins_leaves_the_last_try(
    start_guest: StartGuest, pcscd: Pcscd, tmp_path: Path
) -> None:
    card_dir = tmp_path / "card"
    generate_card(card_dir, CardRequest())
    served = opensc.serve(pcscd, [str(card_dir)], tmp_path, SLOT)
    try:
        async with start_guest(
            PassthruSetup(), [checks.card_driver(), WRONG_PINS], timeout=150
        ) as guest:
            assert guest.passthru_port is not None
            plan = Plan(
                "127.0.0.1", guest.passthru_port, None, (), pcscd.reader_name(SLOT), False, 10,
                guard=CardGuard(keep=1),
            )  # fmt: skip
            daemon = Daemon(plan, "console", 0)
            run = asyncio.create_task(daemon.run(read_stdin=False))
            try:
                result = await guest.wait()
            finally:
                daemon.stop()
                await asyncio.wait_for(run, 10)
    finally:
        opensc.stop(pcscd, served, SLOT)
    assert result.passed, result.report()
    tries = next(c for c in result.checks if c.name == "wrong-pin-loop").output.splitlines()
    # Two wrong PINs reach the card; from then on the guard answers 6983 (CKR_PIN_LOCKED).
    assert tries[:2] == ["try 1: CKR_PIN_INCORRECT", "try 2: CKR_PIN_INCORRECT"]
    assert all(line.endswith("CKR_PIN_LOCKED") for line in tries[2:]), tries
    state = CardStore(card_dir).load_state()
    assert state.pin.tries_remaining == 1  # the owner still has the last try
