"""A host that holds one reader (QEMU's ccid-card-passthru answers every ReaderAdd with reader
id 0) is told from its replies, and the reader it holds keeps its APDU handler."""

from __future__ import annotations

import pytest

import vscard
from vscard import APDU, ClientConnection, Error, ErrorCode, encode
from vscard.asyncio.client import ReaderIdInUseError

from ..daemons.one_reader_host import one_reader_host


def replies(*ids: int) -> bytes:
    return b"".join(encode(Error(reader_id, ErrorCode.SUCCESS)) for reader_id in ids)


def test_a_reader_add_answered_with_an_id_in_use_shows_a_one_reader_host() -> None:
    conn = ClientConnection()
    conn.add_reader("laptop")
    conn.add_reader("token")
    conn.receive_data(replies(0, 0))
    assert conn.one_reader_host
    assert conn.reader_ids == {0}


def test_distinct_ids_or_an_id_given_back_after_a_remove_show_nothing() -> None:
    conn = ClientConnection()
    conn.add_reader("laptop")
    conn.add_reader("token")
    conn.receive_data(replies(0, 1))
    assert conn.reader_ids == {0, 1}
    conn.remove_reader(0)
    conn.add_reader("plugged")
    conn.receive_data(replies(0, 0))  # ReaderRemove(0) answered, then 0 free again
    assert conn.reader_ids == {0, 1}
    assert not conn.one_reader_host


def test_a_refused_reader_add_takes_no_id() -> None:
    conn = ClientConnection()
    conn.add_reader("laptop")
    conn.add_reader("token")
    conn.receive_data(encode(Error(0, ErrorCode.SUCCESS)) + encode(Error(0, 3)))
    assert conn.reader_ids == {0}
    assert not conn.one_reader_host


async def test_the_second_reader_is_refused_and_the_first_keeps_answering() -> None:
    async def laptop(apdu: bytes) -> bytes:
        return b"laptop\x90\x00"

    async def token(apdu: bytes) -> bytes:
        return b"token\x90\x00"

    async with one_reader_host() as (host, port):
        client = await vscard.connect("127.0.0.1", port, timeout=5)
        async with client:
            await client.add_reader("laptop", transmit=laptop)
            with pytest.raises(ReaderIdInUseError) as refused:
                await client.add_reader("token", transmit=token)
            assert (refused.value.name, refused.value.reader_id) == ("token", 0)
            assert client.one_reader_host
            assert [reader.name for reader in client.readers.values()] == ["laptop"]
            assert await host.transmit(b"\x00\xa4\x04\x00") == APDU(0, b"laptop\x90\x00")
