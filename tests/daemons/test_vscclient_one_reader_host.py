"""vscclient against a host that holds one reader (as QEMU's ccid-card-passthru does): the host
sees the local reader that holds a card, and follows the card from reader to reader.

The readers here change as the PC/SC watcher changes them (add, insert, remove, unplug); the
host is a real socket server answering as QEMU does (:mod:`.one_reader_host`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

import vscard
from daemons.local_readers import HostMirror, LocalReader, reader_to_serve
from daemons.vscclient import Daemon, Plan
from vscard import APDU, ATR, CardInserted, CardRemove, ReaderAdd, ReaderAdded, ReaderRemove

from .one_reader_host import OneReaderHost, one_reader_host

SELECT = bytes.fromhex("00A4040000")


@dataclass(frozen=True)
class NamedCard:
    """A card that answers every APDU with its own name, so the host can tell which one did."""

    name: str

    @property
    def atr(self) -> bytes:
        historical = b"card " + self.name.encode()
        return bytes([0x3B, len(historical)]) + historical  # T0: no interface bytes

    def power_on(self) -> None:
        pass

    async def cold_reset(self) -> None:
        self.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        return self.name.encode() + b"\x90\x00"


CARD_A, CARD_B, CARD_C = NamedCard("A"), NamedCard("B"), NamedCard("C")


@dataclass
class Running:
    daemon: Daemon
    host: OneReaderHost
    task: asyncio.Task[int]

    @property
    def mirror(self) -> HostMirror:
        return self.daemon.mirror

    def reader(self, name: str) -> LocalReader:
        return next(reader for reader in self.mirror.readers if reader.name == name)

    async def answered_by(self) -> bytes:
        """Which card answers the guest's next APDU (b"" when the client answers VSC_Error)."""
        answer = await self.host.transmit(SELECT)
        return answer.data[:-2] if isinstance(answer, APDU) else b""


async def start(
    host: OneReaderHost, port: int, cards: dict[str, NamedCard | None], *, reconnect: bool = False
) -> Running:
    """vscclient with readers ``cards`` (name -> card or None), connected to ``host``."""
    daemon = Daemon(Plan("127.0.0.1", port, None, (), None, reconnect, timeout=5), "console", 0)
    for name, card in cards.items():
        daemon.mirror.readers.append(daemon.mirror.new_reader(name, card))
    task = asyncio.create_task(daemon.run(read_stdin=False))
    # Every reader was added (the second ReaderAdd shows the host holds one), then the choice.
    await host.wait_until(lambda h: h.count(ReaderAdd) >= len(cards))
    return Running(daemon, host, task)


@pytest.fixture
async def qemu_like() -> AsyncIterator[tuple[OneReaderHost, int]]:
    async with one_reader_host() as (host, port):
        yield host, port


async def stop(running: Running) -> None:
    running.daemon.stop()
    assert await asyncio.wait_for(running.task, 10) == 0


@pytest.mark.parametrize("holder", ["first", "second"])
async def test_a_one_reader_host_gets_the_reader_that_holds_the_card(
    qemu_like: tuple[OneReaderHost, int], holder: str
) -> None:
    host, port = qemu_like
    card = CARD_A if holder == "first" else CARD_B
    cards = {"first": CARD_A if holder == "first" else None}
    cards["second"] = CARD_B if holder == "second" else None
    running = await start(host, port, cards)
    await host.wait_for_card(card.atr)
    assert await running.answered_by() == card.name.encode()
    assert running.mirror.one_reader_host
    assert running.mirror.served is running.reader(holder)
    # Both ReaderAdds before any ATR: the host is shown no card it will not keep.
    assert [type(m) for m in host.received[2:]] == [ReaderAdd, ReaderAdd, ATR, APDU]
    await stop(running)


async def test_the_host_follows_the_card_to_another_reader(
    qemu_like: tuple[OneReaderHost, int],
) -> None:
    host, port = qemu_like
    running = await start(host, port, {"laptop": CARD_A, "token": None})
    await host.wait_for_card(CARD_A.atr)
    # The card leaves the served reader, as PC/SC reports it: the host sees no card...
    await running.mirror.remove(running.reader("laptop"), forget_card=True)
    await host.wait_for_card(None)
    assert await running.answered_by() == b""
    # ... until another reader gets one: the host moves to that reader.
    await running.mirror.insert(running.reader("token"), CARD_B)
    await host.wait_for_card(CARD_B.atr)
    assert await running.answered_by() == b"B"
    # A card back in the first reader does not take the host from the one it uses.
    await running.mirror.insert(running.reader("laptop"), CARD_C)
    assert running.mirror.served is running.reader("token")
    assert await running.answered_by() == b"B"
    await stop(running)


async def test_when_its_card_goes_the_host_gets_a_card_of_another_reader(
    qemu_like: tuple[OneReaderHost, int],
) -> None:
    host, port = qemu_like
    running = await start(host, port, {"laptop": CARD_A, "token": CARD_B})
    await host.wait_for_card(CARD_A.atr)
    await running.mirror.remove(running.reader("laptop"), forget_card=True)
    await host.wait_for_card(CARD_B.atr)
    assert await running.answered_by() == b"B"
    # The guest saw the first card leave before the second came.
    assert host.count(CardRemove) == 1
    await stop(running)


async def test_readers_plugged_and_unplugged_on_a_one_reader_host(
    qemu_like: tuple[OneReaderHost, int],
) -> None:
    host, port = qemu_like
    running = await start(host, port, {"laptop": None, "token": None})
    mirror = running.mirror
    # A reader plugged in with a card: added, then its card, as the PC/SC watcher does it.
    plugged = mirror.new_reader("plugged")
    await mirror.add_reader(plugged)
    assert mirror.served is running.reader("laptop")  # no card anywhere: the first reader
    await mirror.insert(plugged, CARD_C)
    await host.wait_for_card(CARD_C.atr)
    assert await running.answered_by() == b"C"
    # Unplugged with its card in: the host loses the card but keeps its one reader.
    await mirror.remove_reader(plugged)
    await host.wait_for_card(None)
    assert host.count(ReaderRemove) == 1  # the reset at connect only
    assert mirror.served in mirror.readers
    another = mirror.new_reader("another")
    await mirror.add_reader(another)
    await mirror.insert(another, CARD_B)
    await host.wait_for_card(CARD_B.atr)
    assert await running.answered_by() == b"B"
    await stop(running)


async def test_a_second_reader_shows_a_one_reader_host_when_it_is_plugged_in(
    qemu_like: tuple[OneReaderHost, int],
) -> None:
    """With one reader there is nothing to tell; the second ReaderAdd, later, tells it."""
    host, port = qemu_like
    running = await start(host, port, {"laptop": None})
    await running.mirror.add_reader(running.mirror.new_reader("token", CARD_B))
    await host.wait_for_card(CARD_B.atr)
    assert await running.answered_by() == b"B"
    assert host.count(ATR) == 1
    await stop(running)


async def test_after_a_reconnect_the_host_gets_the_reader_with_the_card_again(
    qemu_like: tuple[OneReaderHost, int],
) -> None:
    host, port = qemu_like
    running = await start(host, port, {"laptop": CARD_A, "token": None}, reconnect=True)
    await host.wait_for_card(CARD_A.atr)
    host.drop()
    await host.wait_until(lambda h: h.count(ReaderAdd) == 4 and h.count(ATR) == 2)
    assert host.atr == CARD_A.atr
    assert await running.answered_by() == b"A"
    await stop(running)


async def test_a_host_with_many_readers_gets_every_reader() -> None:
    """Our own host (ccid-passthru's) gives each reader an id: every reader, every card."""
    events: asyncio.Queue[vscard.HostEvent] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, ReaderAdded | CardInserted):
                await events.put(event)

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        daemon = Daemon(Plan("127.0.0.1", server.port, None, (), None, False, 5), "console", 0)
        for name, card in (("laptop", CARD_A), ("token", CARD_B)):
            daemon.mirror.readers.append(daemon.mirror.new_reader(name, card))
        task = asyncio.create_task(daemon.run(read_stdin=False))
        seen = {await asyncio.wait_for(events.get(), 10) for _ in range(4)}
        assert seen == {
            ReaderAdded(0, "laptop"),
            ReaderAdded(1, "token"),
            CardInserted(0, CARD_A.atr),
            CardInserted(1, CARD_B.atr),
        }
        assert not daemon.mirror.one_reader_host
        daemon.stop()
        assert await asyncio.wait_for(task, 10) == 0


def test_the_reader_to_serve_is_stable() -> None:
    first, second, third = (LocalReader(i, f"r{i}") for i in range(3))
    readers = [first, second, third]
    assert reader_to_serve(readers, None) is first  # no card anywhere: the first
    third.card, third.inserted = CARD_C, True
    assert reader_to_serve(readers, first) is third  # the first that holds a card
    second.card, second.inserted = CARD_B, True
    assert reader_to_serve(readers, third) is third  # the current one while it holds one
    third.inserted = False
    assert reader_to_serve(readers, third) is second  # its card went: another with a card
    second.inserted = False
    assert reader_to_serve(readers, third) is third  # none: stay
    assert reader_to_serve([], third) is None
