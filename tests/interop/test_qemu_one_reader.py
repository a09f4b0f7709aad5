"""Real QEMU 7.2 ccid-card-passthru (no guest) holds one reader: our client tells so from its
replies alone, and keeps the reader QEMU holds."""

from __future__ import annotations

import pytest

import vscard
from vscard.asyncio.client import ReaderIdInUseError

from .qemu import qemu_available, qemu_passthru

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed"),
]


async def never(apdu: bytes) -> bytes:
    raise AssertionError("no guest runs: QEMU sends no APDU")


async def test_qemu_answers_a_second_reader_add_with_the_first_ones_id() -> None:
    async with (
        qemu_passthru() as qemu,
        await vscard.connect("127.0.0.1", qemu.port, timeout=10) as client,
    ):
        first = await client.add_reader("laptop", transmit=never)
        told_by_one_reply = client.one_reader_host
        with pytest.raises(ReaderIdInUseError) as refused:
            await client.add_reader("token", transmit=never)
        assert not told_by_one_reply  # one reader: nothing to tell yet
        assert client.one_reader_host
        assert refused.value.reader_id == first.reader_id == 0
        assert dict(client.readers) == {0: first}
