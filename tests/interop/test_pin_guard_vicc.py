"""The PIN guard in front of a real-card stand-in: vicc (vsmartcard) with PIN and PUK counters
behind a private pcscd, forwarded by a running ``vscclient --pcsc`` to our VSCard host.

vicc parses APDUs its own way: it ignores chaining (each chunk is a whole command) and takes an
extended APDU with a 3-byte Le that our parser rejects. The guard must hold against it too.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

import vscard

from .our_vscclient import running_vscclient
from .pcsc import fixtures
from .pcsc.fixtures import wait_for_card
from .pcsc.pcscd import Pcscd
from .pcsc.vicc import Vicc, ViccConfig, ViccType, running_vicc

pcscd = fixtures.pcscd

pytestmark = pytest.mark.interop

WRONG = (b"999999" + b"\xff\xff").hex()
NEW = (b"654321" + b"\xff\xff").hex()
WRONG_PUK = b"87654321".hex()

# Every way a guest may spend the PIN's or the PUK's tries on this card.
ENCODINGS = [
    "0020008008" + WRONG,
    "00200080000008" + WRONG,
    "00200080000008" + WRONG + "0000",
    "00200080000008" + WRONG + "000000",  # vicc: a VERIFY; our parser: malformed
    "8020008008" + WRONG,  # vicc ignores the class
    "0120008008" + WRONG,
    "1020008004" + WRONG[:8],  # vicc: a whole VERIFY
    "1020008004" + WRONG[8:],
    "0024008010" + WRONG + NEW,
    "00240080000010" + WRONG + NEW,
    "002C008010" + WRONG_PUK + NEW,  # the PUK: nothing can ask for its counter
    "0024008110" + WRONG_PUK + WRONG_PUK,
]


@pytest.fixture
def counting_vicc(pcscd: Pcscd, tmp_path: Path) -> Iterator[Vicc]:
    config = ViccConfig(ViccType.PIN_COUNTER, state_path=tmp_path / "counters.json")
    with running_vicc(pcscd, config, tmp_path / "vicc.log") as card:
        wait_for_card(card.reader_name, present=True)
        yield card
    wait_for_card(card.reader_name, present=False)


def counters(card: Vicc) -> dict[str, int]:
    assert card.config.state_path is not None
    found: dict[str, int] = json.loads(card.config.state_path.read_text())
    return found


@asynccontextmanager
async def guest_of(card: Vicc, *extra: str) -> AsyncIterator[vscard.Session]:
    """Our VSCard host, and ``vscclient --pcsc=READER EXTRA`` connected to it."""
    sessions: asyncio.Queue[vscard.Session] = asyncio.Queue()
    done = asyncio.Event()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, vscard.CardInserted):
                await sessions.put(session)
                await done.wait()

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        args = [f"--pcsc={card.reader_name}", *extra, "127.0.0.1", str(server.port)]
        async with running_vscclient(args):
            try:
                yield await asyncio.wait_for(sessions.get(), 60)
            finally:
                done.set()


async def send(session: vscard.Session, apdus: Sequence[str]) -> list[str]:
    return [(await session.transmit(0, bytes.fromhex(apdu))).hex() for apdu in apdus]


async def test_no_encoding_takes_the_last_pin_try_or_any_puk_try(counting_vicc: Vicc) -> None:
    async with guest_of(counting_vicc, "--pin-guard", "1") as session:
        answers = await send(session, ENCODINGS * 2)
    assert "63c0" not in answers, answers
    assert counters(counting_vicc) == {"pin": 1, "puk": 3}, answers


async def test_a_verified_guest_verifies_again_and_its_wrong_pins_still_stop(
    counting_vicc: Vicc,
) -> None:
    right = "0020008008" + (b"123456" + b"\xff\xff").hex()
    async with guest_of(counting_vicc) as session:
        assert await send(session, [right, right]) == ["9000", "9000"]
        answers = await send(session, ["0020008008" + WRONG] * 4)
    assert answers == ["63c2", "63c1", "6983", "6983"]
    assert counters(counting_vicc)["pin"] == 1


@pytest.mark.parametrize(
    "spending",
    [
        pytest.param("00200080000008" + WRONG + "000000", id="3-byte-Le"),
        pytest.param("1020008004" + WRONG[:8], id="chunk"),
    ],
)
async def test_without_the_guard_vicc_spends_a_try_on_what_our_parser_calls_no_verify(
    counting_vicc: Vicc, spending: str
) -> None:
    """Why malformed PIN commands are refused and each chunk counts as a try."""
    async with guest_of(counting_vicc, "--pin-guard", "0") as session:
        assert await send(session, [spending]) == ["63c2"]
    assert counters(counting_vicc)["pin"] == 2
