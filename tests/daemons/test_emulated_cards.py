"""An emulated card answers cheap APDUs on the event loop and slow ones in a worker thread."""

from __future__ import annotations

import threading
from pathlib import Path

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


async def test_only_slow_commands_leave_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    card = CardStore(tmp_path / "card").open_card()
    threads: list[int] = []
    transmit = card.transmit

    def recording_transmit(apdu: bytes) -> bytes:
        threads.append(threading.get_ident())
        return transmit(apdu)

    monkeypatch.setattr(card, "transmit", recording_transmit)
    emulated = EmulatedCard(card, "card")
    assert (await emulated.transmit(SELECT_PKI))[-2:] == b"\x90\x00"
    assert (await emulated.transmit(VERIFY))[-2:] == b"\x90\x00"
    assert threads[0] == threading.get_ident()  # the event loop's thread
    assert threads[1] != threading.get_ident()
