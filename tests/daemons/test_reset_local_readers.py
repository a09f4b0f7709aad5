"""vscclient's side of our CardReset extension: a reader resets its card and tells an emulated
card the protocol; a real card is reset through its reader and learns the protocol there."""

from __future__ import annotations

import asyncio

import vscard
from daemons.compare_card import CompareCard
from daemons.local_card import LocalCard, ProtocolAware
from daemons.local_readers import HostMirror
from vscard.asyncio.server import SessionEvent


class RealCard:
    """A PC/SC card as the reader sees it: it can be reset, it has no protocol to set."""

    atr = bytes.fromhex("3B 80 81 31 FE 45 8B")

    def __init__(self) -> None:
        self.resets = 0

    def power_on(self) -> None:
        pass

    async def transmit(self, apdu: bytes) -> bytes:
        return b"\x90\x00"

    async def cold_reset(self) -> None:
        self.resets += 1


class EmulatedCard(RealCard):
    def __init__(self) -> None:
        super().__init__()
        self.protocol = 0


def test_only_an_emulated_card_takes_a_protocol() -> None:
    assert isinstance(EmulatedCard(), ProtocolAware)
    assert not isinstance(RealCard(), ProtocolAware)


async def test_a_reset_resets_the_card_and_sets_an_emulated_cards_protocol() -> None:
    mirror = HostMirror()
    emulated, real = EmulatedCard(), RealCard()
    first = mirror.new_reader("emulated", emulated)
    second = mirror.new_reader("real", real)
    await first.cold_reset(1)
    await second.cold_reset(1)
    assert (emulated.resets, emulated.protocol, real.resets) == (1, 1, 1)
    await first.set_protocol(0)
    assert (emulated.resets, emulated.protocol) == (1, 0)


async def test_a_reader_without_its_card_has_nothing_to_reset() -> None:
    card = EmulatedCard()
    reader = HostMirror().new_reader("r", card)
    reader.inserted = False  # taken out on the console
    await reader.cold_reset(1)
    assert (card.resets, card.protocol) == (0, 0)


async def test_compare_mode_resets_both_and_gives_the_protocol_to_the_emulated_card() -> None:
    emulated, real = EmulatedCard(), RealCard()
    compare: LocalCard = CompareCard(emulated, real)
    reader = HostMirror().new_reader("r", compare)
    await reader.cold_reset(1)
    assert (emulated.resets, real.resets, emulated.protocol) == (1, 1, 1)
    assert isinstance(compare, ProtocolAware)
    assert compare.protocol == 1


async def test_a_console_reset_resets_the_card_and_shows_the_host_a_new_card() -> None:
    """What a user of QEMU's path can do: QEMU never passes a guest's power cycle on, so the
    guest is shown the card pulled out and put back, reset in between."""
    events: asyncio.Queue[SessionEvent] = asyncio.Queue()

    async def handler(session: vscard.Session) -> None:
        async for event in session.events():
            await events.put(event)

    card = EmulatedCard()
    mirror = HostMirror()
    reader = mirror.new_reader("r", card)
    async with (
        await vscard.serve(handler, "127.0.0.1", 0) as server,
        await vscard.connect("127.0.0.1", server.port) as client,
    ):
        await mirror.add_reader(reader)
        await mirror.attach(client)
        assert await mirror.reset(reader)
        assert card.resets == 1
        seen = [await asyncio.wait_for(events.get(), 5) for _ in range(5)]
        assert [type(event) for event in seen[-3:]] == [
            vscard.CardInserted,
            vscard.CardRemoved,
            vscard.CardInserted,
        ]
        reader.inserted = False
        assert not await mirror.reset(reader)
        assert card.resets == 1
