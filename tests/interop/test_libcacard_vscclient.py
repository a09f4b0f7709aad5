"""libcacard's reference vscclient, built from Debian's source, against real QEMU passthru."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .guest.nssdb import NssDb, make_nssdb
from .libcacard.vscclient import (
    ReaderListing,
    build_vscclient,
    missing_host_prerequisites,
    run_vscclient,
    soft_card_args,
)
from .qemu import qemu_available, qemu_passthru

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed"),
]

READER = "Virtual Reader"
# vscclient -d 1 prints the header of every message QEMU sends.
HOST_INIT = r"Header: type=1, reader_id=4294967295 length=12 "
HOST_ACK = r"Header: type=2, reader_id=0 length=4 "  # an Error message: QEMU's answer


@pytest.fixture(scope="session")
def vscclient_binary() -> Path:
    missing = missing_host_prerequisites()
    if missing:
        pytest.skip(f"building vscclient needs: {', '.join(missing)}")
    return build_vscclient()


@pytest.fixture(scope="session")
def nssdb() -> Iterator[NssDb]:
    # Short path: QEMU and libcacard format db="sql:<path>" into small buffers.
    with tempfile.TemporaryDirectory(prefix="vsc-") as directory:
        yield make_nssdb(Path(directory) / "db")


def test_a_second_build_reuses_the_cached_binary(vscclient_binary: Path) -> None:
    before = vscclient_binary.stat()
    assert build_vscclient() == vscclient_binary
    assert vscclient_binary.stat().st_mtime_ns == before.st_mtime_ns
    assert os.access(vscclient_binary, os.X_OK)


async def test_vscclient_inserts_its_soft_cac_card_into_qemu(
    vscclient_binary: Path, nssdb: NssDb
) -> None:
    args = soft_card_args(nssdb.directory, nssdb.nicknames, READER)
    async with (
        qemu_passthru() as qemu,
        run_vscclient(vscclient_binary, "127.0.0.1", qemu.port, args) as client,
    ):
        await client.expect(r"Connected \(sizeof Header=12\)!")
        await client.expect(HOST_INIT)
        # QEMU answers vscclient's ReaderRemove (sent on every Init), ReaderAdd and ATR.
        await client.expect(HOST_ACK, count=3)
        assert await client.readers() == [ReaderListing(0, True, READER)]
        assert "refused" not in client.text
        assert "Unexpected message" not in client.text
        # QEMU is still healthy after the exchange.
        assert (await qemu.qmp.execute("query-status"))["status"] == "prelaunch"
    assert client.process.returncode == 0


async def test_vscclient_commands_remove_and_reinsert_the_card(
    vscclient_binary: Path, nssdb: NssDb
) -> None:
    args = soft_card_args(nssdb.directory, nssdb.nicknames, READER)
    async with (
        qemu_passthru() as qemu,
        run_vscclient(vscclient_binary, "127.0.0.1", qemu.port, args) as client,
    ):
        await client.expect(HOST_ACK, count=3)
        assert await client.readers() == [ReaderListing(0, True, READER)]

        since = await client.command("remove 0")
        await client.expect(rf"remove {READER}, returned 0", since=since)
        await client.expect(HOST_ACK, since=since)  # QEMU acknowledged CardRemove
        assert await client.readers() == [ReaderListing(0, False, READER)]

        since = await client.command("insert 0")
        await client.expect(rf"insert {READER}, returned 0", since=since)
        await client.expect(HOST_ACK, since=since)  # QEMU accepted the ATR
        assert await client.readers() == [ReaderListing(0, True, READER)]
        assert "refused" not in client.text
