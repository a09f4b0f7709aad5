"""Our USB/IP-exported CCID reader in a Linux guest: ``usbip attach`` -> vhci-hcd -> pcscd ->
libccid -> OpenSC, fed by our vscclient, by libcacard's vscclient, or by an in-process card."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cacard import CardRequest, generate_card
from cacard.atr import CAC_ATR_T1
from daemons.vscclient import Daemon, Plan
from tests.daemons.passthru_process import running_passthru
from tests.interop.guest import checks
from tests.interop.guest.checks import Check
from tests.interop.guest.runner import Guest, UsbipSetup

from .our_vscclient import running_vscclient
from .pcsc import fixtures as pcsc_fixtures
from .pcsc.vicc import ISO7816_ATR, Vicc
from .test_vscclient_guest import SELECT_MF

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import RunGuest, StartGuest
    from tests.interop.guest.nssdb import NssDb

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

pcscd = pcsc_fixtures.pcscd
vicc = pcsc_fixtures.vicc

BUSID = "1-1"  # the first reader ccid-passthru exports


def large_response(size: int = 1024) -> Check:
    """One APDU whose response is ``size`` bytes (GET CHALLENGE with an extended Le) arrives
    whole: QEMU's usb-ccid drops any response over 374 bytes.

    OpenSC sends an extended APDU only when the card driver declares support; the CAC driver
    does not (its own APDUs are short), so ``opensc-tool`` is told to use the SmartCard-HSM
    driver, which declares it and whose set-up does not depend on the card. The APDU reaches
    the card unchanged either way.
    """
    le = f"{size >> 8:02X} {size & 0xFF:02X}"
    body = f"""
out=$(opensc-tool -c sc-hsm -r 0 -s "00 84 00 00 00 {le}" 2>&1); echo "$out"
echo "$out" | grep -q "SW1=0x90, SW2=0x00" || exit 1
bytes=$(echo "$out" | sed -n '/^Received/,$p' | grep -oE '^([0-9A-F]{{2}} )+' | wc -w)
echo "response data: $bytes bytes"
[ "$bytes" -eq {size} ]
"""
    return Check(f"large-response.{size}", body)


async def test_our_vscclient_through_ccid_passthru(start_guest: StartGuest, card_dir: Path) -> None:
    async with running_passthru() as passthru:
        args = ["--card", str(card_dir), "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            await client.event("vscard.reader_added")  # the host accepted the reader
            async with start_guest(
                UsbipSetup(passthru.usbip_port, BUSID),
                [
                    *checks.standard_card_checks(),
                    checks.decrypt(key=3),  # cacard new: the third certificate encrypts
                    checks.card_reinserted(),
                    checks.sign_verify("SHA256-RSA-PKCS", key=2),
                    checks.reader_removed(device_gone=True),
                ],
                timeout=180,
            ) as guest:

                async def remove_card(guest: Guest) -> None:
                    await client.command("remove 0")
                    await client.event("vscclient.card_removed")

                async def insert_card(guest: Guest) -> None:
                    await client.command("insert 0")
                    await client.event("vscclient.card_inserted")

                async def exit_vscclient(guest: Guest) -> None:
                    # vscclient's exit removes its reader: ccid-passthru unplugs the device.
                    await client.command("exit")
                    assert await client.wait() == 0

                guest.actions[checks.REMOVE_CARD] = remove_card
                guest.actions[checks.INSERT_CARD] = insert_card
                guest.actions[checks.REMOVE_READER] = exit_vscclient
                result = await guest.wait()
    assert result.passed, result.report()


async def test_libcacards_vscclient_through_ccid_passthru(
    run_guest: RunGuest, reference_nssdb: NssDb
) -> None:
    libcacard = pytest.importorskip("tests.interop.libcacard.vscclient")
    missing = libcacard.missing_host_prerequisites()
    if missing:
        pytest.skip(f"building vscclient needs: {', '.join(missing)}")
    binary = await asyncio.to_thread(libcacard.build_vscclient)
    emul_args = libcacard.soft_card_args(reference_nssdb.directory, reference_nssdb.nicknames)
    async with (
        running_passthru(capture_log=True) as passthru,
        libcacard.run_vscclient(binary, "127.0.0.1", passthru.vscard_port, emul_args, debug=0),
    ):
        await asyncio.wait_for(passthru.log_event("passthru.card_inserted"), 30)
        result = await run_guest(
            UsbipSetup(passthru.usbip_port, BUSID),
            [*checks.standard_card_checks(), checks.decrypt()],
            timeout=150,
        )
    assert result.passed, result.report()


async def test_an_emulated_card_alone(run_guest: RunGuest, tmp_path: Path) -> None:
    """``ccid-passthru --card DIR``: QEMU's ccid-card-emulated without QEMU, no client at all;
    and a response over 374 bytes in one APDU.

    The card offers T=1 as well (``cacard new --atr cac-t1``): over T=0 OpenSC turns an extended
    APDU into a short one, and our reader, unlike QEMU's, lets pcscd pick T=1.
    """
    card_dir = tmp_path / "card"
    generate_card(card_dir, CardRequest(atr=CAC_ATR_T1))
    async with running_passthru(["--card", str(card_dir)]) as passthru:
        result = await run_guest(
            UsbipSetup(passthru.usbip_port, BUSID),
            [*checks.standard_card_checks(), checks.decrypt(key=3), large_response(1024)],
            timeout=150,
        )
    assert result.passed, result.report()


async def test_a_real_reader_through_ccid_passthru(run_guest: RunGuest, vicc: Vicc) -> None:
    """vscclient --pcsc forwards vicc (a T=1 card) to ccid-passthru; unlike QEMU's T=0-only
    usb-ccid, our reader offers T=1, so the guest exchanges APDUs with it."""
    async with running_passthru(capture_log=True) as passthru:
        plan = Plan("127.0.0.1", passthru.vscard_port, None, (), vicc.reader_name, False, 10)
        daemon = Daemon(plan, "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        try:
            await asyncio.wait_for(passthru.log_event("passthru.card_inserted"), 30)
            result = await run_guest(
                UsbipSetup(passthru.usbip_port, BUSID),
                [checks.reader_listed(), checks.atr(ISO7816_ATR), SELECT_MF],
                timeout=120,
            )
        finally:
            daemon.stop()
            await asyncio.wait_for(run, 10)
    assert result.passed, result.report()
