"""One PIN guard serving several cards APDU after APDU: what it learns stays per card."""

from __future__ import annotations

import gc
from pathlib import Path

from cacard import CardRequest, CardStore, generate_card
from daemons.card_guard import ApduPolicy, CardGuard
from daemons.emulated_cards import EmulatedCard

WRONG_PIN = bytes.fromhex("0020000008") + b"11111111"
SELECT_NOTHING = bytes.fromhex("00A4040002A0FF")


def make_cards(directory: Path, count: int) -> list[EmulatedCard]:
    cards = []
    for index in range(count):
        path = directory / f"card{index}"
        generate_card(path, CardRequest(key_size=1024, pin_iterations=1))
        cards.append(EmulatedCard(CardStore(path).open_card(), path.name))
    return cards


async def test_interleaved_cards_each_keep_their_last_try(tmp_path: Path) -> None:
    first, second = make_cards(tmp_path, 2)
    guard = CardGuard(keep=1)
    answers = [
        (await guard.transmit(card, WRONG_PIN)).hex() for _ in range(3) for card in (first, second)
    ]
    assert answers == ["63c2", "63c2", "63c1", "63c1", "6983", "6983"]
    await first.cold_reset()
    guard.forget(first)  # asks that card again; the other's memory is untouched
    assert (await guard.transmit(first, WRONG_PIN)).hex() == "6983"
    assert (await guard.transmit(second, WRONG_PIN)).hex() == "6983"
    assert (await second.transmit(bytes.fromhex("00200000"))).hex() == "63c1"


async def test_a_card_that_is_gone_leaves_nothing_for_the_next(tmp_path: Path) -> None:
    (card,) = make_cards(tmp_path, 1)
    guard = CardGuard(keep=1)
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c2"
    del card
    gc.collect()
    (again,) = make_cards(tmp_path / "again", 1)
    assert (await guard.transmit(again, WRONG_PIN)).hex() == "63c2"


async def test_refusals_and_pass_throughs_are_awaited_alike(tmp_path: Path) -> None:
    (card,) = make_cards(tmp_path, 1)
    guard = CardGuard(keep=0, policy=ApduPolicy(frozenset({0x20})))
    assert guard.policy.restricts
    assert not ApduPolicy().restricts
    assert (await guard.transmit(card, SELECT_NOTHING)).hex() == "6d00"
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c2"
    assert (await CardGuard(keep=0).transmit(card, SELECT_NOTHING)).hex() == "6a82"
