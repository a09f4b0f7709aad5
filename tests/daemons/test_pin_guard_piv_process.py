"""The PIN guard of a running ``vscclient --card <PIV card>``: a VSCard host sends wrong PINs
and PUKs through PIV's references over a real socket (VERIFY 80, CHANGE REFERENCE DATA 80 and
81, RESET RETRY COUNTER 80); the guard keeps the last try of each counter, and the right PIN
still gets through while tries are left."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacard import CardRequest, CardStore, generate_card
from cacard.profile import Applications

from .piv_session import SELECT_PIV
from .test_pin_guard_process import Guest, guest_of

RIGHT_PIN = b"77777777".hex()
WRONG_PIN = b"11111111".hex()
RIGHT_PUK = b"12345678".hex()
WRONG_PUK = b"87654321".hex()
NEW_PIN = b"24682468".hex()
SELECT = SELECT_PIV.hex()

# Commands that spend a PIN try, in PIV's references and encodings.
WRONG_PIN_COMMANDS = {
    "VERIFY 80": "0020008008" + WRONG_PIN,
    "extended VERIFY 80": "00200080000008" + WRONG_PIN,
    "extended VERIFY 80 with Le": "00200080000008" + WRONG_PIN + "0000",
    "CHANGE REFERENCE DATA 80": "0024008010" + WRONG_PIN + NEW_PIN,
    "extended CHANGE REFERENCE DATA 80": "00240080000010" + WRONG_PIN + NEW_PIN,
}
# Commands that spend a PUK try.
WRONG_PUK_COMMANDS = {
    "CHANGE REFERENCE DATA 81": "0024008110" + WRONG_PUK + RIGHT_PUK,
    "RESET RETRY COUNTER 80": "002C008010" + WRONG_PUK + NEW_PIN,
    "extended RESET RETRY COUNTER 80": "002C0080000010" + WRONG_PUK + NEW_PIN,
}


@pytest.fixture(params=[Applications.PIV, Applications.CAC_PIV], ids=["piv", "cac+piv"])
def card(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    applications: Applications = request.param
    generate_card(
        tmp_path / "card",
        CardRequest(key_size=1024, pin_iterations=1, applications=applications),
    )
    return tmp_path / "card"


async def send_to_piv(guest: Guest, apdus: list[str]) -> list[str]:
    """SELECT the PIV application, then send ``apdus``; their answers."""
    (selected,) = await guest.send([SELECT])
    assert selected[-4:] in ("9000", "6130"), selected
    return await guest.send(apdus)


def pin_tries(card: Path) -> int:
    return CardStore(card).load_state().pin.tries_remaining


def puk_tries(card: Path) -> int:
    puk = CardStore(card).load_puk()
    assert puk is not None
    return puk.tries_remaining


@pytest.mark.parametrize("name", list(WRONG_PIN_COMMANDS))
async def test_wrong_pins_through_piv_stop_at_the_last_try(card: Path, name: str) -> None:
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await send_to_piv(guest, [*[WRONG_PIN_COMMANDS[name]] * 5])
    assert answers == ["63c2", "63c1", "6983", "6983", "6983"]
    assert pin_tries(card) == 1


async def test_the_global_and_the_piv_pin_are_one_counter_to_the_guard(card: Path) -> None:
    """VERIFY 00 and VERIFY 80 spend the card's one PIN: mixed, two wrong ones reach it."""
    verify_00 = "0020000008" + WRONG_PIN
    verify_80 = "0020008008" + WRONG_PIN
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await send_to_piv(guest, [verify_00, verify_80, verify_00, verify_80])
    assert answers == ["63c2", "63c1", "6983", "6983"]
    assert pin_tries(card) == 1


@pytest.mark.parametrize("name", list(WRONG_PUK_COMMANDS))
async def test_wrong_puks_never_take_the_last_try(card: Path, name: str) -> None:
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await send_to_piv(guest, [*[WRONG_PUK_COMMANDS[name]] * 5])
    assert "63c0" not in answers
    assert set(answers) <= {"63c2", "63c1", "6983"}, answers
    assert puk_tries(card) >= 1
    assert pin_tries(card) == 3


async def test_reset_retry_counter_is_refused_even_with_the_right_puk(card: Path) -> None:
    """The PUK's counter cannot be asked for, so the guard never spends it (pin_commands)."""
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await send_to_piv(guest, ["002C008010" + RIGHT_PUK + NEW_PIN])
    assert answers == ["6983"]
    assert puk_tries(card) == 3


async def test_the_right_pin_gets_through_while_tries_are_left(card: Path) -> None:
    async with guest_of(card, "--pin-guard", "1") as guest:
        answers = await send_to_piv(
            guest,
            [
                "0020008008" + WRONG_PIN,
                "0020008008" + RIGHT_PIN,  # back to 3 tries
                "00200080",  # verified
                "0024008010" + WRONG_PIN + NEW_PIN,
                "0024008010" + RIGHT_PIN + NEW_PIN,  # the PIN changes
                "0020008008" + NEW_PIN,
            ],
        )
    assert answers == ["63c2", "9000", "9000", "63c2", "9000", "9000"]
    assert pin_tries(card) == 3


async def test_with_the_guard_off_wrong_pins_block_the_piv_card(card: Path) -> None:
    async with guest_of(card, "--pin-guard", "0") as guest:
        answers = await send_to_piv(guest, [*[WRONG_PIN_COMMANDS["VERIFY 80"]] * 4])
    assert answers == ["63c2", "63c1", "63c0", "6983"]
    assert pin_tries(card) == 0
