"""An emulated card answers cheap APDUs on the event loop and slow ones in a worker thread."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import cast

import pytest

from cacard import CardRequest, CardStore, generate_card
from cacard.card import Card
from daemons.emulated_cards import EmulatedCard

SELECT_PKI = bytes.fromhex("00A4040C07A0000000790100")
VERIFY = bytes.fromhex("0020000008") + b"77777777"
SIGN = bytes.fromhex("80420000") + bytes([128]) + bytes(128)


@pytest.mark.parametrize(
    ("apdu", "slow"),
    [
        (SELECT_PKI, False),
        (bytes.fromhex("00C0000000"), False),
        (bytes.fromhex("80360000FF"), False),  # GET PROPERTIES
        (VERIFY, True),
        (bytes.fromhex("002400000A") + bytes(10), True),
        (SIGN, True),
        (b"\x00", False),
        (b"", False),
    ],
)
def test_may_block_names_key_and_pin_commands(apdu: bytes, slow: bool) -> None:
    assert Card.may_block(apdu) is slow


class ThreadRecordingCard:
    """A card that notes the thread each :meth:`transmit` runs in. It stands in for the card
    rather than patching its ``transmit``: the compiled build's card is a native class."""

    may_block = staticmethod(Card.may_block)

    def __init__(self, card: Card) -> None:
        self.card = card
        self.threads: list[int] = []

    def transmit(self, apdu: bytes) -> bytes:
        self.threads.append(threading.get_ident())
        return self.card.transmit(apdu)


async def test_only_slow_commands_leave_the_event_loop_thread(tmp_path: Path) -> None:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    card = ThreadRecordingCard(CardStore(tmp_path / "card").open_card())
    emulated = EmulatedCard(cast(Card, card), "card")  # it only asks may_block, and transmits
    assert (await emulated.transmit(SELECT_PKI))[-2:] == b"\x90\x00"
    assert (await emulated.transmit(VERIFY))[-2:] == b"\x90\x00"
    assert card.threads[0] == threading.get_ident()  # the event loop's thread
    assert card.threads[1] != threading.get_ident()
