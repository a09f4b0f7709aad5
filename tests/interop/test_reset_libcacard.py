"""libcacard's vscclient announces no capability: through our ccid-passthru an importer's power
cycles send it nothing new (no CardReset, which it would take for an unexpected message and
stop reading), and its card keeps serving, as under QEMU."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.daemons.passthru_process import running_passthru
from tests.daemons.test_reset_passthru import imported

from . import test_libcacard_vscclient as libcacard_tests
from .guest.nssdb import NssDb
from .libcacard.vscclient import run_vscclient, soft_card_args

pytestmark = pytest.mark.interop

SELECT_CAC_PKI = bytes.fromhex("00A4040007A0000000790100")
#: vscclient -d 1 prints the header of every message the host sends.
HEADER = re.compile(r"Header: type=(-?\d+), reader_id=")


# The libcacard tests' fixtures, bound here (importing them by name makes ruff see each test
# argument as a redefinition).
vscclient_binary = libcacard_tests.vscclient_binary
nssdb = libcacard_tests.nssdb


async def test_power_cycles_send_libcacards_vscclient_nothing_new(
    vscclient_binary: Path, nssdb: NssDb
) -> None:
    args = soft_card_args(nssdb.directory, nssdb.nicknames, "Virtual Reader")
    async with (
        running_passthru(capture_log=True) as passthru,
        run_vscclient(vscclient_binary, "127.0.0.1", passthru.vscard_port, args) as client,
        imported(passthru) as importer,
    ):
        for _ in range(3):
            await importer.power_on()
            answer = await importer.transmit(SELECT_CAC_PKI)
            assert answer[-2] in (0x90, 0x61)
            await importer.power_off()
        await importer.power_on()
        assert (await importer.transmit(SELECT_CAC_PKI))[-2] in (0x90, 0x61)
        types = {int(match.group(1)) for match in HEADER.finditer(client.text)}
        assert types == {1, 2, 7}, client.text  # Init, Error (replies), APDU: nothing else
        assert "Unexpected message" not in client.text
