"""``vscclient HOST PORT`` with no card option serves the client's PC/SC readers: the private
pcscd's two vpcd readers, vicc as the card in either, vscclient as a process.

Against our own host every reader arrives; against a host that holds one reader (answering as
QEMU's ccid-card-passthru does, every ReaderAdd with reader id 0) the host gets the reader that
holds the card, whichever slot that is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

import vscard
from vscard import APDU, CardInserted, CardRemoved, PeerInit, ReaderAdded

from ..daemons.one_reader_host import one_reader_host
from .our_vscclient import running_vscclient
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd
from .pcsc.vicc import ISO7816_ATR, Vicc, ViccConfig, running_vicc
from .selecting_host import SELECT_MF, SelectingHost

pcscd = fixtures.pcscd
vicc = fixtures.vicc

pytestmark = pytest.mark.interop


@pytest.fixture(params=[0, 1], ids=["card-in-slot-0", "card-in-slot-1"])
def vicc_in_either_slot(
    request: pytest.FixtureRequest, pcscd: Pcscd, tmp_path: Path
) -> Iterator[Vicc]:
    """vicc in vpcd slot 0 or 1; the other reader stays empty."""
    config = ViccConfig(slot=request.param)
    with running_vicc(pcscd, config, tmp_path / "vicc.log") as card:
        fixtures.wait_for_card(card.reader_name, present=True)
        yield card
    fixtures.wait_for_card(card.reader_name, present=False)


async def test_without_a_card_option_every_pcsc_reader_reaches_our_host(
    pcscd: Pcscd, vicc: Vicc
) -> None:
    host = SelectingHost()

    async def first(count: int) -> set[object]:
        """The next ``count`` events, in whichever order they came."""
        return {await asyncio.wait_for(host.events.get(), 20) for _ in range(count)}

    async with (
        await vscard.serve(host.handle, "127.0.0.1", 0) as server,
        running_vscclient(["127.0.0.1", str(server.port)]) as client,
    ):
        # Whether vscclient met the readers before or after connecting orders these.
        assert await first(5) == {
            PeerInit(2, (0xE000_0000,)),  # CARD_RESET | RESPONSE_CHAIN | READ_AHEAD
            ReaderAdded(0, pcscd.reader_name(0)),
            ReaderAdded(1, pcscd.reader_name(1)),
            CardInserted(0, ISO7816_ATR),
            b"\x90\x00",  # the card answered the host's APDU
        }
        # The card pulled out of the real reader: the host hears of it (hotplug).
        await asyncio.to_thread(vicc.stop)
        assert await host.next_of(CardRemoved) == CardRemoved(0)
        client.process.terminate()
        assert await client.wait() == 0


async def test_a_one_reader_host_gets_the_pcsc_reader_that_holds_the_card(
    vicc_in_either_slot: Vicc,
) -> None:
    async with (
        one_reader_host() as (host, port),
        running_vscclient(["127.0.0.1", str(port)]) as client,
    ):
        sees = await client.event("vscclient.host_sees")
        await host.wait_for_card(ISO7816_ATR)
        # The guest's APDU reaches the card, not the empty reader.
        assert await host.transmit(SELECT_MF) == APDU(0, b"\x90\x00")
        if not sees["card"]:  # the reader announced first was empty: the host moved
            sees = await client.event("vscclient.host_sees")
        assert sees["name"] == vicc_in_either_slot.reader_name
        client.process.terminate()
        assert await client.wait() == 0
