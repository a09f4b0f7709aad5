"""The asyncio client against a scripted host: the wire replies are the connection's, the
readers' handlers see every APDU the host sends a reader it has."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import vscard
from tests.logs import capture_logs
from vscard import APDU, Decoder, Error, ErrorCode, Flush, FlushComplete, Init, Message, encode

SELECT = bytes.fromhex("00A4040007A0000000790100")
ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


class ScriptedHost:
    """Answers Init with Init; everything else the test writes itself, and reads back."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[Message] = asyncio.Queue()
        self.writer: asyncio.StreamWriter | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        decoder = Decoder()
        while data := await reader.read(65536):
            for message in decoder.feed(data):
                if isinstance(message, Init):
                    writer.write(encode(Init()))
                else:
                    self.received.put_nowait(message)
        writer.close()

    def send(self, *messages: Message) -> None:
        """Write ``messages`` in one write: the client reads them in one go."""
        assert self.writer is not None
        self.writer.write(b"".join(encode(message) for message in messages))

    async def next(self) -> Message:
        return await asyncio.wait_for(self.received.get(), 5)


@contextlib.asynccontextmanager
async def scripted() -> AsyncIterator[tuple[ScriptedHost, vscard.Client]]:
    host = ScriptedHost()
    server = await asyncio.start_server(host.handle, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        client = await vscard.connect("127.0.0.1", port, timeout=5, reset=False)
        try:
            yield host, client
        finally:
            await close(host, client)


async def close(host: ScriptedHost, client: vscard.Client) -> None:
    """Close the client, answering the removals it sends on its way out."""
    closing = asyncio.create_task(client.close())
    while not closing.done():
        getting = asyncio.create_task(host.received.get())
        await asyncio.wait({getting, closing}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():
            getting.cancel()
        elif not isinstance(message := getting.result(), APDU | Error | FlushComplete):
            host.send(Error(message.reader_id, ErrorCode.SUCCESS))
    await closing


async def card(apdu: bytes) -> bytes:
    return b"\x90\x00"


async def test_an_apdu_for_an_unknown_reader_gets_general_error_and_a_warning() -> None:
    with capture_logs(logging.WARNING) as logs:
        async with scripted() as (host, _):
            host.send(APDU(5, SELECT), Flush(5))
            assert await host.next() == Error(5, ErrorCode.GENERAL_ERROR)
            assert await host.next() == FlushComplete(5)
    unexpected = [entry for entry in logs if entry["event"] == "vscard.unexpected"]
    assert [entry["reason"] for entry in unexpected] == ["no such reader"] * 2


async def test_the_host_may_use_a_reader_in_the_same_write_as_its_reader_add_reply() -> None:
    async with scripted() as (host, client):
        adding = asyncio.create_task(client.add_reader("r", transmit=card))
        await host.next()  # the ReaderAdd
        host.send(Error(0, ErrorCode.SUCCESS), APDU(0, SELECT))
        reader = await asyncio.wait_for(adding, 5)
        assert reader.reader_id == 0
        assert await host.next() == APDU(0, b"\x90\x00")


async def test_an_id_given_back_at_once_after_a_removal_is_a_new_reader() -> None:
    async with scripted() as (host, client):
        adding = asyncio.create_task(client.add_reader("old", transmit=card))
        await host.next()
        host.send(Error(0, ErrorCode.SUCCESS))
        old = await asyncio.wait_for(adding, 5)
        removing = asyncio.create_task(old.remove())
        await host.next()  # the ReaderRemove
        adding = asyncio.create_task(client.add_reader("new", transmit=card))
        await host.next()  # the ReaderAdd
        # Both replies in one read: 0 was free again when the host gave it.
        host.send(Error(0, ErrorCode.SUCCESS), Error(0, ErrorCode.SUCCESS))
        await asyncio.wait_for(removing, 5)
        new = await asyncio.wait_for(adding, 5)
        assert not client.one_reader_host
        assert dict(client.readers) == {0: new}


async def test_a_readers_atr_is_what_the_host_accepted() -> None:
    atr = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")
    async with scripted() as (host, client):
        adding = asyncio.create_task(client.add_reader("r", transmit=card))
        await host.next()
        host.send(Error(0, ErrorCode.SUCCESS))
        reader = await asyncio.wait_for(adding, 5)
        inserting = asyncio.create_task(reader.insert(atr))
        await host.next()
        assert reader.atr is None  # not before the host said yes
        host.send(Error(0, ErrorCode.SUCCESS))
        await asyncio.wait_for(inserting, 5)
        assert reader.atr == atr


async def add_eager_reader(
    host: ScriptedHost, client: vscard.Client, transmit: vscard.APDUHandler
) -> vscard.ClientReader:
    adding = asyncio.create_task(client.add_reader("r", transmit=transmit, eager=True))
    await host.next()  # the ReaderAdd
    host.send(Error(0, ErrorCode.SUCCESS))
    return await asyncio.wait_for(adding, 5)


async def test_an_eager_readers_apdus_in_one_read_are_answered_in_order() -> None:
    async def echo(apdu: bytes) -> bytes:
        return apdu[1:2] + b"\x90\x00"

    async with scripted() as (host, client):
        await add_eager_reader(host, client, echo)
        host.send(APDU(0, b"\x00\x01"), APDU(0, b"\x00\x02"), Flush(0), APDU(0, b"\x00\x03"))
        assert [await host.next() for _ in range(4)] == [
            APDU(0, b"\x01\x90\x00"),
            APDU(0, b"\x02\x90\x00"),
            FlushComplete(0),
            APDU(0, b"\x03\x90\x00"),
        ]


async def test_what_follows_an_apdu_an_eager_card_waits_on_is_answered_after_it() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()
    seen: list[bytes] = []

    async def slow_first(apdu: bytes) -> bytes:
        seen.append(apdu)
        if apdu == b"\x00\x01":
            entered.set()
            await release.wait()
        return apdu[1:2] + b"\x90\x00"

    async with scripted() as (host, client):
        await add_eager_reader(host, client, slow_first)
        host.send(APDU(0, b"\x00\x01"), APDU(0, b"\x00\x02"), Flush(0))
        await asyncio.wait_for(entered.wait(), 5)
        assert seen == [b"\x00\x01"]  # the card works on one APDU at a time
        release.set()
        assert [await host.next() for _ in range(3)] == [
            APDU(0, b"\x01\x90\x00"),
            APDU(0, b"\x02\x90\x00"),
            FlushComplete(0),
        ]
        assert seen == [b"\x00\x01", b"\x00\x02"]


async def test_a_card_removal_waits_for_the_apdu_an_eager_card_waits_on() -> None:
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(apdu: bytes) -> bytes:
        entered.set()
        await release.wait()
        return b"\x90\x00"

    async with scripted() as (host, client):
        reader = await add_eager_reader(host, client, slow)
        inserting = asyncio.create_task(reader.insert(ATR))
        assert await host.next() == vscard.ATR(0, ATR)
        host.send(Error(0, ErrorCode.SUCCESS), APDU(0, SELECT))
        await asyncio.wait_for(inserting, 5)
        await asyncio.wait_for(entered.wait(), 5)
        # The removal's task runs first and finds the card busy.
        removing = asyncio.create_task(reader.remove_card())
        release.set()
        assert await host.next() == APDU(0, b"\x90\x00")
        assert await host.next() == vscard.CardRemove(0)
        host.send(Error(0, ErrorCode.SUCCESS))
        await asyncio.wait_for(removing, 5)


async def test_an_eager_cards_failure_before_or_after_waiting_is_answered_vsc_error() -> None:
    async def failing(apdu: bytes) -> bytes:
        if apdu == b"\x00\x01":
            raise RuntimeError("card fails at once")
        if apdu == b"\x00\x02":
            await asyncio.sleep(0)
            raise RuntimeError("card fails after waiting")
        return b"\x90\x00"

    with capture_logs(logging.WARNING) as logs:
        async with scripted() as (host, client):
            await add_eager_reader(host, client, failing)
            host.send(APDU(0, b"\x00\x01"), APDU(0, b"\x00\x02"), APDU(0, b"\x00\x03"))
            assert [await host.next() for _ in range(3)] == [
                Error(0, ErrorCode.GENERAL_ERROR),
                Error(0, ErrorCode.GENERAL_ERROR),
                APDU(0, b"\x90\x00"),
            ]
    failed = [entry["error"] for entry in logs if entry["event"] == "vscard.apdu_failed"]
    assert failed == [
        repr(RuntimeError("card fails at once")),
        repr(RuntimeError("card fails after waiting")),
    ]
