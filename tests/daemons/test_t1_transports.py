"""Transports that know the card runs T=1 say so to it (:attr:`cacard.card.Card.protocol`):
vpcd (pcscd takes T=1 whenever the ATR offers it) and ccid-passthru's in-process cards (our
reader configures the protocol itself); a T=0-only ATR keeps T=0."""

from __future__ import annotations

import pytest

from cacard.atr import CAC_ATR, CAC_ATR_T1, PIV_ATR
from cacard.card import Card
from cacard.profile import Applications, CardProfile, new_card
from cacard.vpcd import VpcdConnection, frame
from daemons.card_guard import CardGuard
from daemons.ccid_passthru import GuardedCard
from daemons.emulated_cards import EmulatedCard
from tests.cacard.cards import CARD_ID, credential, pin_state

SELECT_PIV_WITHOUT_LE = bytes.fromhex("00A4040009A00000030800001000")


def piv_card(atr: bytes) -> Card:
    profile = CardProfile((credential(0),), CARD_ID, atr, applications=Applications.PIV)
    return new_card(profile, pin_state())


@pytest.mark.parametrize(("atr", "protocol"), [(PIV_ATR, 1), (CAC_ATR_T1, 1), (CAC_ATR, 0)])
def test_vpcd_runs_t1_when_the_atr_offers_it(atr: bytes, protocol: int) -> None:
    card = piv_card(atr)
    connection = VpcdConnection(card)
    assert card.protocol == protocol
    answer = connection.receive_data(frame(SELECT_PIV_WITHOUT_LE))
    if protocol:
        assert answer[-2:] == b"\x90\x00"
        assert len(answer) > 4
    else:
        assert answer[2:3] == b"\x61"


@pytest.mark.parametrize(("atr", "protocol"), [(PIV_ATR, 1), (CAC_ATR_T1, 1), (CAC_ATR, 0)])
async def test_an_in_process_card_of_ccid_passthru_runs_t1_when_the_atr_offers_it(
    atr: bytes, protocol: int
) -> None:
    card = EmulatedCard(piv_card(atr), "piv")
    guarded = GuardedCard(card, CardGuard())
    assert card.protocol == protocol
    answer = await guarded.transmit(SELECT_PIV_WITHOUT_LE)
    assert (answer[-2:] == b"\x90\x00") is bool(protocol)
