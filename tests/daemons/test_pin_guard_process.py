"""The PIN guard of a running vscclient: a VSCard host sends wrong PINs and PUKs in every
encoding over a real socket; the card directory's persisted counter keeps its last try."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

import vscard
from cacard import CardRequest, CardStore, generate_card
from tests.interop.our_vscclient import running_vscclient

WRONG = b"11111111".hex()
RIGHT = b"77777777".hex()

# What a guest may send to spend the card's tries (the card has 3; the guard keeps 1).
ENCODINGS = {
    "extended VERIFY": "00200000000008" + WRONG,
    "extended VERIFY with Le": "00200000000008" + WRONG + "0000",
    "VERIFY on channel 1, proprietary class": "8120000008" + WRONG,
    "CHANGE REFERENCE DATA": "0024000010" + WRONG + RIGHT,
    "extended CHANGE REFERENCE DATA": "00240000000010" + WRONG + RIGHT,
    "chained VERIFY": "1020000004" + WRONG[:8],
    "vicc's 3-byte extended Le": "00200000000008" + WRONG + "000000",
}


@dataclass(frozen=True)
class Guest:
    session: vscard.Session
    reader_id: int

    async def send(self, apdus: Sequence[str]) -> list[str]:
        return [
            (await self.session.transmit(self.reader_id, bytes.fromhex(apdu))).hex()
            for apdu in apdus
        ]


@asynccontextmanager
async def guest_of(card: Path, *extra: str) -> AsyncIterator[Guest]:
    """Our VSCard host and a ``vscclient --card CARD EXTRA`` process connected to it."""
    inserted: asyncio.Queue[Guest] = asyncio.Queue()
    done = asyncio.Event()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, vscard.CardInserted):
                await inserted.put(Guest(session, event.reader_id))
                await done.wait()

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        args = ["--card", str(card), *extra, "127.0.0.1", str(server.port)]
        async with running_vscclient(args) as client:
            try:
                yield await asyncio.wait_for(inserted.get(), 60)
            finally:
                done.set()
        assert client.process.returncode is not None


@pytest.fixture
def card(tmp_path: Path) -> Path:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return tmp_path / "card"


@pytest.mark.parametrize("encoding", list(ENCODINGS))
async def test_no_encoding_of_wrong_pins_takes_the_last_try(card: Path, encoding: str) -> None:
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await guest.send([ENCODINGS[encoding]] * 5)
    assert "63c0" not in answers, answers
    assert CardStore(card).load_state().pin.tries_remaining >= 1


async def test_every_encoding_together_leaves_the_last_try_and_the_owner_logs_in(
    card: Path,
) -> None:
    async with guest_of(card) as guest:  # the guard is on by default
        answers = await guest.send(list(ENCODINGS.values()) * 2)
        assert answers[:2] == ["63c2", "63c1"]  # two wrong PINs reach the card, then 6983
        assert set(answers[2:]) <= {"6983", "6700"}, answers
    assert CardStore(card).load_state().pin.tries_remaining == 1
    store = CardStore(card)
    with store.lock():
        owner = store.open_card()
        assert owner.transmit(bytes.fromhex("0020000008" + RIGHT)).hex() == "9000"


async def test_with_the_guard_off_the_guest_blocks_the_card(card: Path) -> None:
    async with guest_of(card, "--pin-guard", "0") as guest:
        answers = await guest.send([ENCODINGS["extended VERIFY"]] * 4)
    assert answers == ["63c2", "63c1", "63c0", "6983"]
    assert CardStore(card).load_state().pin.tries_remaining == 0


async def test_envelopes_reach_the_card_unless_they_carry_a_pin_the_guard_keeps(
    card: Path,
) -> None:
    """Our card answers ENVELOPE 6D00, so what else the guest sees is the guard's answer."""
    verify = "0020000008" + WRONG
    async with guest_of(card) as guest:
        answers = await guest.send(
            [
                "00C2000006" + "00CA7F680000",  # GET DATA in an ENVELOPE: the card's 6D00
                "00C200000D" + verify,  # a wrong PIN in one, tries to spare: forwarded
                verify,
                verify,  # the last try beyond keep
                "00C200000D" + verify,  # now the guard's
                "00C2000003" + verify[:6],  # the first part of a split VERIFY
                "00C200000A" + verify[6:],  # ... and the rest
                "00C30000" + "0F530D" + verify,  # BER-TLV ENVELOPE: not read, not forwarded
            ]
        )
    assert answers == ["6d00", "6d00", "63c2", "63c1", "6983", "6983", "6983", "6d00"]
    assert CardStore(card).load_state().pin.tries_remaining == 1


async def test_the_aid_allow_list_looks_inside_envelopes_without_the_pin_guard(
    card: Path,
) -> None:
    """Our card answers ENVELOPE 6D00 and has the CCC: a 6A82 is the allow list's answer."""
    select_ccc = "00A4040007A000000116DB00"
    select_pki = "00A4040007A0000000790100"
    async with guest_of(card, "--pin-guard", "0", "--allow-aid", "A000000079") as guest:
        answers = await guest.send(
            [
                "00C200000C" + select_ccc,  # a SELECT the allow list refuses, in an ENVELOPE
                "00C200000C" + select_pki,  # one it allows: the card's 6D00
                "00C2000003" + select_pki[:6],  # a split SELECT by AID: not judged, refused
                "00C2000009" + select_pki[6:],  # ... to its end
                "00A4040207A0000000790100",  # the next occurrence: the card's order decides
                select_pki,
            ]
        )
    assert answers[:5] == ["6a82", "6d00", "6a82", "6a82", "6a82"]
    assert answers[5] in ("610d", "9000")
