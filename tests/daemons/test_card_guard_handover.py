"""The PIN guard and a card other applications share (a PC/SC card under vscclient's lease,
handed over between the guest's transactions, reset by default): another application's wrong
PINs between two of the guest's never let the guest take the last try (the guard asks the card,
not its memory), and a command the handover's reset cut in two inside ENVELOPEs gains nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacard import CardRequest, CardStore, generate_card
from daemons.card_guard import CardGuard
from daemons.emulated_cards import EmulatedCard

from .test_card_guard import (
    RIGHT_PIN,
    WRONG_PIN,
    EnvelopeCard,
    envelope,
    enveloped,
)

STATUS = bytes.fromhex("00200000")


class HandedOverCard:
    """An emulated card shared as :class:`daemons.pcsc_readers.PcscCard` shares a real one under
    a lease: :meth:`release` ends the guest's transaction (with a reset by default)."""

    def __init__(self, card: EmulatedCard, *, reset_on_release: bool) -> None:
        self.card = card
        self.reset_on_release = reset_on_release
        self.sent: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> None:
        self.card.power_on()

    async def cold_reset(self) -> None:
        await self.card.cold_reset()

    async def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return await self.card.transmit(apdu)

    async def release(self) -> None:
        """The guest's transaction ends (with the reset vscclient does by default)."""
        if self.reset_on_release:
            await self.card.cold_reset()


@pytest.fixture
def emulated(tmp_path: Path) -> EmulatedCard:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return EmulatedCard(CardStore(tmp_path / "card").open_card(), "card")


@pytest.mark.parametrize("reset", [True, False], ids=["reset on release", "--pcsc-keep-state"])
async def test_tries_another_application_spent_are_asked_again(
    emulated: EmulatedCard, reset: bool
) -> None:
    shared = HandedOverCard(emulated, reset_on_release=reset)
    guard = CardGuard(keep=1)
    assert (await guard.transmit(shared, WRONG_PIN)).hex() == "63c2"
    await shared.release()
    # Another application on the client's machine tries a PIN meanwhile.
    assert (await emulated.transmit(WRONG_PIN)).hex() == "63c1"
    # The guard asks again and keeps the last try.
    assert (await guard.transmit(shared, WRONG_PIN)).hex() == "6983"
    assert STATUS in shared.sent[1:]
    assert (await emulated.transmit(RIGHT_PIN)).hex() == "9000"


class HandedOverEnvelopes(HandedOverCard):
    """:class:`HandedOverCard` around a card that executes ENVELOPE (gathering parts until
    they make a command); the handover's reset empties its buffer as it logs the card out."""

    def __init__(self, card: EnvelopeCard) -> None:
        super().__init__(card, reset_on_release=True)  # type: ignore[arg-type]
        self.envelopes = card

    async def release(self) -> None:
        self.envelopes.buffers.clear()
        self.envelopes.power_on()


async def test_after_a_reset_at_the_handover_the_next_envelope_starts_a_command() -> None:
    # A harmless command's head in one ENVELOPE, a handover that resets the card (which drops
    # the head), then a whole VERIFY in the next: the card runs it as a command of its own, so
    # the guard must judge it as one, not as the harmless command's data.
    card = enveloped("length", max_tries=1)
    shared = HandedOverEnvelopes(card)
    guard = CardGuard(keep=1)
    verify = bytes.fromhex("0020000007") + b"1111111"  # a wrong PIN, 12 bytes in all
    head = bytes.fromhex("00CA00000D01")  # GET DATA with 1 of its 13 data bytes
    assert (await guard.transmit(shared, envelope(head)))[-2:] == b"\x90\x00"
    await shared.release()
    answer = await guard.transmit(shared, envelope(verify))
    assert answer.hex() == "6983"
    assert card.tries == 1
