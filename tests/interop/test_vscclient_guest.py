"""Our vscclient -> real QEMU 7.2 ccid-card-passthru -> a Linux guest's pcscd, libccid, OpenSC."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from daemons.vscclient import Daemon, Plan
from tests.interop.guest import checks
from tests.interop.guest.checks import Check
from tests.interop.guest.runner import Guest, PassthruSetup

from ..tls_pki import make_tls_files
from .our_vscclient import running_vscclient
from .pcsc import fixtures as pcsc_fixtures
from .pcsc.vicc import ISO7816_ATR, Vicc

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import StartGuest
    from tests.interop.guest.nssdb import NssDb

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

pcscd = pcsc_fixtures.pcscd
vicc = pcsc_fixtures.vicc


async def serve_guest(start_guest: StartGuest, args: list[str], *, decrypt_key: int) -> None:
    """Run the standard checks, a decrypt, and a removal/re-insertion from vscclient's stdin
    followed by another signature, with our vscclient serving the passthru port."""
    async with start_guest(
        PassthruSetup(),
        [
            *checks.standard_card_checks(),
            checks.decrypt(key=decrypt_key),
            checks.card_reinserted(),
            checks.sign_verify("SHA256-RSA-PKCS", key=2),
        ],
        timeout=150,
    ) as guest:
        assert guest.passthru_port is not None
        async with running_vscclient([*args, "127.0.0.1", str(guest.passthru_port)]) as client:
            await client.event("vscclient.connected")

            async def remove_card(guest: Guest) -> None:
                await client.command("remove 0")
                await client.event("vscclient.card_removed")

            async def insert_card(guest: Guest) -> None:
                await client.command("insert 0")
                await client.event("vscclient.card_inserted")

            guest.actions[checks.REMOVE_CARD] = remove_card
            guest.actions[checks.INSERT_CARD] = insert_card
            result = await guest.wait()
    assert result.passed, result.report()


async def test_a_cacard_directory_in_the_guest(start_guest: StartGuest, card_dir: Path) -> None:
    # cacard new: ID, signature and encryption certificates; only the third may decrypt.
    await serve_guest(start_guest, ["--card", str(card_dir)], decrypt_key=3)


async def test_an_nss_database_through_the_seed_syntax(
    start_guest: StartGuest, reference_nssdb: NssDb
) -> None:
    emul = f'db="sql:{reference_nssdb.directory}" use_hw=no soft=(,Test,CAC,,cert1,cert2,cert3)'
    await serve_guest(start_guest, ["-e", emul], decrypt_key=1)


async def test_the_guest_logs_in_after_a_reconnect(start_guest: StartGuest, card_dir: Path) -> None:
    """vscclient killed and started again: QEMU keeps its state, our handshake resets it."""
    async with start_guest(PassthruSetup(), checks.standard_card_checks(), timeout=150) as guest:
        assert guest.passthru_port is not None
        args = ["--card", str(card_dir), "127.0.0.1", str(guest.passthru_port)]
        async with running_vscclient(args) as first:
            await first.event("vscclient.connected")
            first.process.kill()
            await first.wait()
        async with running_vscclient(args) as second:
            await second.event("vscclient.connected")
            result = await asyncio.wait_for(guest.wait(), 150)
    assert result.passed, result.report()


SELECT_MF = Check(
    "apdu.select-mf",
    'out=$(opensc-tool -r 0 -s "00 A4 00 0C 02 3F 00" 2>&1); echo "$out"\n'
    'echo "$out" | grep -q "SW1=0x90, SW2=0x00"',
)


async def test_a_real_reader_forwarded_with_pcsc(start_guest: StartGuest, vicc: Vicc) -> None:
    """pcscd + vpcd + vicc on the host stand in for a real reader; vscclient --pcsc forwards
    it unchanged and the guest sees vicc's ATR.

    The guest cannot exchange APDUs with this card through QEMU: vicc's ATR offers T=1 only and
    QEMU 7.2's usb-ccid is a T=0 reader, so pcscd's PTS to T=1 fails ("Protocol T=1 not
    supported by reader"). The same card through our ccid-passthru, which offers both, does
    (``test_ccid_passthru_guest.py::test_a_real_reader_through_ccid_passthru``).
    """
    async with start_guest(
        PassthruSetup(), [checks.reader_listed(), checks.atr(ISO7816_ATR)], timeout=120
    ) as guest:
        assert guest.passthru_port is not None
        plan = Plan("127.0.0.1", guest.passthru_port, None, (), vicc.reader_name, False, 10)
        daemon = Daemon(plan, "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        try:
            result = await guest.wait()
        finally:
            daemon.stop()
            await asyncio.wait_for(run, 10)
    assert result.passed, result.report()


async def test_over_tls_to_qemu_the_guest_signs(
    start_guest: StartGuest, card_dir: Path, tmp_path: Path
) -> None:
    """vscclient drives QEMU's TLS chardev (tls-creds-x509, verify-peer=on) with mutual TLS."""
    pki = make_tls_files(tmp_path / "pki")
    async with start_guest(
        PassthruSetup(tls_dir=pki.directory), checks.standard_card_checks(), timeout=150
    ) as guest:
        assert guest.passthru_port is not None
        args = [
            "--card", str(card_dir),
            "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
            "--tls-key", str(pki.client_key), "--tls-server-name", "localhost",
            "127.0.0.1", str(guest.passthru_port),
        ]  # fmt: skip
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            result = await guest.wait()
    assert result.passed, result.report()
