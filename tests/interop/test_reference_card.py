"""QEMU's own CAC card (``ccid-card-emulated``) in a Linux guest: the known-good baseline.

If this fails, the rig or the host is broken, not vscard: every other guest test compares
against what pcscd, libccid and OpenSC do with this card.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from tests.interop.guest import checks
from tests.interop.guest.runner import (
    Action,
    EmulatedSetup,
    Guest,
    PassthruSetup,
    UsbipExportSetup,
    UsbipSetup,
    default_actions,
)
from tests.interop.guest.setups import EXPORTED_BUSID

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import RunGuest, StartGuest
    from tests.interop.guest.nssdb import NssDb

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop


async def test_reference_card_passes_the_standard_checks(
    run_guest: RunGuest, reference_nssdb: NssDb
) -> None:
    result = await run_guest(
        EmulatedSetup(reference_nssdb.directory, reference_nssdb.nicknames),
        [
            checks.reader_listed("Gemalto Gemplus USB SmartCard Reader 433-Swap"),
            checks.atr(),
            checks.card_driver("Common Access Card (CAC)"),
            checks.pkcs15_objects(certificates=3, private_keys=3),
            checks.pkcs11_slots(),
            checks.pkcs11_objects(certificates=3, private_keys=3),
            checks.sign_verify("SHA256-RSA-PKCS"),
        ],
        timeout=120,
    )
    assert result.passed, result.report()


async def test_reference_card_survives_removal_and_reader_unplug(
    run_guest: RunGuest, reference_nssdb: NssDb
) -> None:
    result = await run_guest(
        EmulatedSetup(reference_nssdb.directory, reference_nssdb.nicknames),
        [
            checks.atr(),
            checks.decrypt(),
            checks.card_reinserted(),
            checks.card_driver(),
            checks.reader_removed(),
        ],
        timeout=120,
    )
    assert result.passed, result.report()


async def test_reference_card_over_usbip_from_a_linux_usbipd(
    start_guest: StartGuest, run_guest: RunGuest, reference_nssdb: NssDb
) -> None:
    """Setup (c) against Linux's own USB/IP server: a second guest exports the reference card.

    This is the baseline for our USB/IP server: the same guest, the same checks.
    """
    card = EmulatedSetup(reference_nssdb.directory, reference_nssdb.nicknames)
    client_done = asyncio.Event()

    async def serve_until_the_client_is_done(guest: Guest) -> None:
        await client_done.wait()

    async with start_guest(
        UsbipExportSetup(card),
        [checks.serve()],
        actions={checks.STOP_SERVING: serve_until_the_client_is_done},
        timeout=150,
    ) as server:
        exported = await server.wait_for_check("setup.usbip-export")
        assert exported is not None, (await server.wait()).report()
        assert exported.passed, exported.output
        assert server.usbip_port is not None
        card_actions = default_actions(server.setup)

        def on_server(token: str) -> Action:
            async def act(guest: Guest) -> None:
                await card_actions[token](server)

            return act

        port = server.usbip_port
        try:
            result = await run_guest(
                UsbipSetup(port, EXPORTED_BUSID, attach=False),
                [
                    checks.usbip_list(port, EXPORTED_BUSID),
                    *checks.usbip_reader(port, EXPORTED_BUSID),
                    *checks.standard_card_checks(),
                    checks.card_reinserted(),
                    checks.usbip_detach(),
                ],
                actions={t: on_server(t) for t in (checks.REMOVE_CARD, checks.INSERT_CARD)},
                timeout=120,
            )
        finally:
            client_done.set()
        served = await server.wait()
    assert result.passed, result.report()
    assert served.passed, served.report()


async def test_reference_vscclient_over_passthru_passes_the_same_checks(
    start_guest: StartGuest, reference_nssdb: NssDb
) -> None:
    """Setup (a) with libcacard's own vscclient as the card side: the baseline for our client."""
    libcacard = pytest.importorskip("tests.interop.libcacard.vscclient")
    missing = libcacard.missing_host_prerequisites()
    if missing:
        pytest.skip(f"building vscclient needs: {', '.join(missing)}")
    binary = await asyncio.to_thread(libcacard.build_vscclient)
    emul_args = libcacard.soft_card_args(reference_nssdb.directory, reference_nssdb.nicknames)

    async with start_guest(
        PassthruSetup(),
        [*checks.standard_card_checks(), checks.decrypt(), checks.card_reinserted()],
        timeout=120,
    ) as guest:
        assert guest.passthru_port is not None
        async with libcacard.run_vscclient(
            binary, "127.0.0.1", guest.passthru_port, emul_args, debug=0
        ) as vscclient:

            async def remove_card(guest: Guest) -> None:
                await vscclient.command("remove 0")

            async def insert_card(guest: Guest) -> None:
                await vscclient.command("insert 0")

            guest.actions[checks.REMOVE_CARD] = remove_card
            guest.actions[checks.INSERT_CARD] = insert_card
            result = await guest.wait()
    assert result.passed, result.report()
