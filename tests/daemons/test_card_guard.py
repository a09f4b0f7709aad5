"""The PIN guard keeps a card's last tries from a guest, and the APDU allow list."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacard import CardRequest, CardStore, generate_card
from daemons.card_guard import ApduPolicy, CardGuard, tries_left
from daemons.emulated_cards import EmulatedCard

WRONG_PIN = bytes.fromhex("0020000008") + b"11111111"
RIGHT_PIN = bytes.fromhex("0020000008") + b"77777777"


@pytest.fixture
def card(tmp_path: Path) -> EmulatedCard:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return EmulatedCard(CardStore(tmp_path / "card").open_card(), "card")


@pytest.mark.parametrize(
    ("status", "left"),
    [("63C2", 2), ("63C0", 0), ("6983", 0), ("9000", None), ("6A88", None), ("63", None)],
)
def test_tries_left_reads_the_verify_status(status: str, left: int | None) -> None:
    assert tries_left(bytes.fromhex(status)) == left


async def test_a_guest_looping_wrong_pins_leaves_the_last_try(card: EmulatedCard) -> None:
    guard = CardGuard(keep=1)
    answers = [(await guard.transmit(card, WRONG_PIN)).hex() for _ in range(10)]
    # 3 tries: two wrong PINs reach the card, then the guard answers for it.
    assert answers == ["63c2", "63c1"] + ["6983"] * 8
    assert (await card.transmit(bytes.fromhex("00200000"))).hex() == "63c1"
    # The owner, without the guard, still has that last try.
    assert (await card.transmit(RIGHT_PIN)).hex() == "9000"


async def test_with_the_guard_off_a_guest_can_block_the_card(card: EmulatedCard) -> None:
    guard = CardGuard(keep=0)
    answers = [(await guard.transmit(card, WRONG_PIN)).hex() for _ in range(4)]
    assert answers == ["63c2", "63c1", "63c0", "6983"]


async def test_a_right_pin_passes_the_guard_while_tries_remain(card: EmulatedCard) -> None:
    guard = CardGuard(keep=1)
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c2"
    assert (await guard.transmit(card, RIGHT_PIN)).hex() == "9000"


async def test_the_apdu_policy_answers_for_the_card(card: EmulatedCard) -> None:
    policy = ApduPolicy(frozenset({0xA4, 0xC0}), frozenset({bytes.fromhex("A000000079")}))
    guard = CardGuard(keep=1, policy=policy)
    assert (await guard.transmit(card, bytes.fromhex("00CA7F6800"))).hex() == "6d00"
    select_pki = bytes.fromhex("00A4040007A0000000790100")
    assert (await guard.transmit(card, select_pki))[-2:] in (b"\x90\x00", b"\x61\x0d")
    select_piv = bytes.fromhex("00A4040009A00000030800001000")
    assert (await guard.transmit(card, select_piv)).hex() == "6a82"
