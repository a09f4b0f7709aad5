"""A card with PIV served through our vpcd bridge (``cacard serve-vpcd``) to a private pcscd,
connected as yubico-piv-tool connects (SCardConnect offering T=1 only): its ATR offers T=1, so
pcscd takes the connection, and a PIV host's first commands work through it (SELECT, GET DATA
CHUID, VERIFY 80, GENERAL AUTHENTICATE 9A), as does yubico-piv-tool's SELECT without Le,
which the card answers at once under T=1."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from cacard.atr import CAC_ATR_T1, PIV_ATR
from cacard.store import CardStore

from ..daemons.piv_session import SELECT_PIV, key_9a, piv_session
from . import opensc
from .opensc import cacard
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd

pcscd = fixtures.pcscd

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        bool(fixtures.missing_host_prerequisites()), reason="needs pcscd, vpcd and root"
    ),
]

SLOT = 0


@pytest.mark.parametrize(("profile", "atr"), [("piv", PIV_ATR), ("cac+piv", CAC_ATR_T1)])
def test_a_piv_card_through_vpcd_takes_a_t1_only_connection(
    pcscd: Pcscd, tmp_path: Path, profile: str, atr: bytes
) -> None:
    directory = tmp_path / "card"
    subprocess.run(
        cacard("new", str(directory), "--profile", profile, "--key-size", "1024", "--certs", "1"),
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert CardStore(directory).load_profile().atr == atr
    process = opensc.serve(pcscd, [str(directory)], tmp_path, SLOT)
    try:
        (reader,) = [r for r in readers() if str(r) == pcscd.reader_name(SLOT)]
        connection = reader.createConnection()
        connection.connect(CardConnection.T1_protocol)  # yubico-piv-tool's SCardConnect
        try:
            assert connection.getProtocol() == CardConnection.T1_protocol
            assert bytes(connection.getATR()) == atr

            async def transmit(apdu: bytes) -> bytes:
                data, sw1, sw2 = connection.transmit(list(apdu))
                return bytes([*data, sw1, sw2])

            # yubico-piv-tool's SELECT has no Le and wants 9000 with the data, not 61xx.
            data, sw1, sw2 = connection.transmit(list(SELECT_PIV[:-1]))
            assert (sw1, sw2) == (0x90, 0x00)
            assert data[:1] == [0x61]  # the application property template
            session = asyncio.run(piv_session(transmit, key_9a(directory)))
        finally:
            connection.disconnect()
    finally:
        opensc.stop(pcscd, process, SLOT)
    assert (session.select_sw, session.verify_sw) == (0x9000, 0x9000)
    assert session.chuid.startswith(b"\x53")
