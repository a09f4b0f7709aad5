"""Our VSCard client against real QEMU 7.2 ``ccid-card-passthru``: every reply QEMU sends."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import vscard
from vscard import (
    ATR,
    CardRemove,
    ClientConnection,
    ErrorCode,
    Init,
    PeerInit,
    ReaderAdd,
    ReaderRemove,
    RequestAnswered,
)

from .qemu import QemuPassthru, qemu_available, qemu_passthru

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed"),
]

ATHENA_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


@pytest.fixture
async def qemu() -> AsyncIterator[QemuPassthru]:
    async with qemu_passthru() as running:
        yield running


class Wire:
    """Our sans-IO client over a plain socket, so the test sees every reply as QEMU sent it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = ClientConnection()
        self.events: list[object] = []

    async def exchange(self, count: int) -> list[object]:
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()
        async with asyncio.timeout(10):
            while len(self.events) < count:
                data = await self.reader.read(65536)
                assert data, "QEMU closed the connection"
                self.events += self.conn.receive_data(data)
                assert self.conn.error is None, f"QEMU sent a malformed frame: {self.conn.error}"
        got, self.events = self.events[:count], self.events[count:]
        return got


async def test_qemu_answers_every_client_request_as_documented(qemu: QemuPassthru) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", qemu.port)
    wire = Wire(reader, writer)
    try:
        # QEMU's unsolicited Init went out at realize, before we connected: it answers ours.
        wire.conn.send_init()
        assert await wire.exchange(1) == [PeerInit(2, (0,))]

        wire.conn.remove_reader(0)
        assert await wire.exchange(1) == [RequestAnswered(ReaderRemove(0), 0, ErrorCode.SUCCESS)]

        wire.conn.add_reader("Virtual Reader")
        # QEMU has one reader: ReaderAdd always gets reader_id 0, whatever the request said.
        added = ReaderAdd(0xFFFFFFFF, "Virtual Reader")
        assert await wire.exchange(1) == [RequestAnswered(added, 0, ErrorCode.SUCCESS)]

        wire.conn.insert_card(0, ATHENA_ATR)
        assert await wire.exchange(1) == [RequestAnswered(ATR(0, ATHENA_ATR), 0, ErrorCode.SUCCESS)]

        # QEMU's ATR check refuses an ATR whose T0 announces bytes that are missing.
        wire.conn.insert_card(0, bytes.fromhex("3B02AA"))
        assert await wire.exchange(1) == [
            RequestAnswered(ATR(0, bytes.fromhex("3B02AA")), 0, ErrorCode.GENERAL_ERROR)
        ]

        wire.conn.remove_card(0)
        assert await wire.exchange(1) == [RequestAnswered(CardRemove(0), 0, ErrorCode.SUCCESS)]

        wire.conn.remove_reader(0)
        assert await wire.exchange(1) == [RequestAnswered(ReaderRemove(0), 0, ErrorCode.SUCCESS)]
    finally:
        writer.close()


async def test_qemu_replies_are_the_golden_bytes(qemu: QemuPassthru) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", qemu.port)
    try:
        writer.write(vscard.encode(Init(0)) + vscard.encode(ReaderAdd(7, "")))
        async with asyncio.timeout(10):
            received = await reader.readexactly(24 + 16)
        assert received[:24] == bytes.fromhex(
            "00000001 FFFFFFFF 0000000C 56534344 00000002 00000000"
        )
        assert received[24:] == bytes.fromhex("00000002 00000000 00000004 00000000")
    finally:
        writer.close()


async def test_high_level_client_runs_a_card_lifecycle_and_reconnects(qemu: QemuPassthru) -> None:
    async def card(apdu: bytes) -> bytes:
        return b"\x6d\x00"

    for _ in range(2):  # QEMU keeps card state across connections: the reset must clear it
        async with await vscard.connect("127.0.0.1", qemu.port) as client:
            assert client.host_version == vscard.VSCARD_VERSION
            reader = await client.add_reader("Virtual Reader", transmit=card)
            assert reader.reader_id == 0
            await reader.insert(ATHENA_ATR)
            with pytest.raises(vscard.RequestRefusedError):
                await reader.insert(bytes.fromhex("3B0F"))
            await reader.remove_card()
        assert client.closed


async def test_the_example_program_drives_qemu(qemu: QemuPassthru) -> None:
    example = Path(__file__).parents[2] / "examples" / "drive_qemu.py"
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(example), "127.0.0.1", str(qemu.port), "--once",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(30):
        output, _ = await process.communicate()
    text = output.decode()
    assert process.returncode == 0, text
    assert "reader_id 0" in text
    assert "the host accepted it" in text
    assert "Disconnected cleanly" in text
