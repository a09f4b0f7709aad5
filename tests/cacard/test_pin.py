"""VERIFY, its retry counter and CHANGE REFERENCE DATA.

libcacard has no counter (a wrong PIN answers 6985 and costs nothing) and answers the status
query with 6A88. This card behaves like a real CAC or PIV card instead: 63Cx with the tries
left, 6983 once blocked, a full counter again after a right PIN.
"""

from __future__ import annotations

import pytest

from cacard.card import CardState
from cacard.pin import Pin, PinFormatError, PinReference, PinState, check_pin
from cardfloor.iso7816.apdu import CommandAPDU

from .cards import PIN, PIN_HEX, WRONG_PIN_HEX, hexsw, make_card, pin_state, send

VERIFY = "00 20 00 00 08 "
STATUS = "00 20 00 00"


def test_a_wrong_pin_counts_down_and_answers_63cx() -> None:
    card = make_card()
    assert hexsw(send(card, STATUS)) == "63C3"
    assert hexsw(send(card, VERIFY + WRONG_PIN_HEX)) == "63C2"
    assert hexsw(send(card, STATUS)) == "63C2"
    assert hexsw(send(card, VERIFY + WRONG_PIN_HEX)) == "63C1"
    assert card.state.pin.tries_remaining == 1
    assert not card.pin_verified


def test_the_right_pin_refills_the_counter_and_verifies() -> None:
    card = make_card()
    send(card, VERIFY + WRONG_PIN_HEX)
    assert hexsw(send(card, VERIFY + PIN_HEX)) == "9000"
    assert card.pin_verified
    assert card.state.pin.tries_remaining == 3
    assert hexsw(send(card, STATUS)) == "9000"


def test_the_card_blocks_at_zero_and_then_refuses_even_the_right_pin() -> None:
    card = make_card()
    assert [hexsw(send(card, VERIFY + WRONG_PIN_HEX)) for _ in range(3)] == [
        "63C2",
        "63C1",
        "63C0",
    ]
    assert card.state.pin.blocked
    assert hexsw(send(card, VERIFY + PIN_HEX)) == "6983"
    assert hexsw(send(card, STATUS)) == "6983"
    assert not card.pin_verified


def test_a_wrong_pin_undoes_an_earlier_verification() -> None:
    card = make_card()
    send(card, VERIFY + PIN_HEX)
    send(card, VERIFY + WRONG_PIN_HEX)
    assert not card.pin_verified


def test_trailing_ff_padding_is_stripped_as_opensc_pads_short_pins() -> None:
    card = make_card(pin=pin_state("1234"))
    assert hexsw(send(card, VERIFY + b"1234".hex() + "FFFFFFFF")) == "9000"


@pytest.mark.parametrize(
    "data",
    [
        "00 20 00 00 09 313233343536373839",
        "00 20 00 00 03 313233",
        "00 20 00 00 08 FFFFFFFFFFFFFFFF",
    ],
    ids=["too long", "too short", "only padding"],
)
def test_data_no_pin_can_match_answers_6a80_and_costs_no_try(data: str) -> None:
    card = make_card()
    assert hexsw(send(card, data)) == "6A80"
    assert card.state.pin.tries_remaining == 3


def test_parameters_other_than_the_one_pin_reference_are_refused() -> None:
    card = make_card()
    # libcacard answers 6A00 to any P1/P2; ISO 7816-4 has 6A86 (P1) and 6A88 (no such PIN).
    assert hexsw(send(card, VERIFY.replace("00 00 08", "01 00 08") + PIN_HEX)) == "6A86"
    assert hexsw(send(card, "00 20 00 80 08" + PIN_HEX)) == "6A88"
    assert card.state.pin.tries_remaining == 3


def test_verify_p1_ff_resets_the_verification_status() -> None:
    card = make_card()
    send(card, VERIFY + PIN_HEX)
    assert hexsw(send(card, "00 20 FF 00")) == "9000"
    assert not card.pin_verified
    assert hexsw(send(card, STATUS)) == "63C3"


def test_power_off_and_reset_forget_the_verification_but_not_the_counter() -> None:
    card = make_card()
    send(card, VERIFY + WRONG_PIN_HEX)
    send(card, VERIFY + PIN_HEX)
    card.reset()
    assert not card.pin_verified
    send(card, VERIFY + WRONG_PIN_HEX)
    card.power_off()
    card.power_on()
    assert card.state.pin.tries_remaining == 2


def test_the_spent_try_reaches_the_sink_before_the_pin_is_compared() -> None:
    seen: list[tuple[int, bool]] = []
    pin = Pin(pin_state(), lambda state: seen.append((state.tries_remaining, pin.verified)))
    right = CommandAPDU(0, 0x20, 0, 0, PIN.encode())
    assert pin.verify(right).sw == 0x9000
    # First the decrement (not yet verified), then the refill.
    assert seen == [(2, False), (3, False)]


def test_a_sink_that_fails_gets_6581_and_the_try_is_still_spent() -> None:
    def broken(state: CardState) -> None:
        raise OSError("disk full")

    card = make_card(on_state_change=broken)
    assert hexsw(send(card, VERIFY + PIN_HEX)) == "6581"
    assert card.state.pin.tries_remaining == 2
    assert not card.pin_verified


def test_change_reference_data_needs_the_old_pin_and_sets_the_new_one() -> None:
    states: list[CardState] = []
    card = make_card(on_state_change=states.append)
    new = b"24681357".hex()
    assert hexsw(send(card, "00 24 00 00 10" + WRONG_PIN_HEX + new)) == "63C2"
    assert hexsw(send(card, "00 24 00 00 10" + PIN_HEX + new)) == "9000"
    assert states[-1].pin.tries_remaining == 3
    assert hexsw(send(card, VERIFY + PIN_HEX)) == "63C2"
    assert hexsw(send(card, VERIFY + new)) == "9000"


def test_change_reference_data_refuses_a_new_pin_that_is_not_4_to_8_digits() -> None:
    card = make_card()
    assert hexsw(send(card, "00 24 00 00 10" + PIN_HEX + b"12ab".hex() + "FF" * 4)) == "6A80"
    assert hexsw(send(card, "00 24 00 00 08" + PIN_HEX)) == "6A80"
    assert card.state.pin.tries_remaining == 3


def test_pins_are_4_to_8_digits_and_only_a_salted_hash_is_kept() -> None:
    assert check_pin("1234") == b"1234"
    for bad in ("123", "123456789", "12a4"):
        with pytest.raises(PinFormatError) as caught:
            check_pin(bad)
        assert bad not in str(caught.value)
    reference = PinReference.create(PIN, iterations=2)
    assert PIN.encode() not in reference.digest + reference.salt
    assert reference.matches(PIN.encode())
    assert not reference.matches(b"77777778")
    assert PinReference.create(PIN, iterations=2).salt != reference.salt


def test_pin_state_checks_its_counter_and_unblocks() -> None:
    with pytest.raises(ValueError, match="max_tries"):
        PinState.create(max_tries=16, iterations=1)
    with pytest.raises(ValueError, match="tries_remaining"):
        PinState(pin_state().reference, 3, 4)
    blocked = PinState(pin_state().reference, 3, 0)
    assert blocked.blocked
    assert blocked.unblocked().tries_remaining == 3
    renewed = blocked.unblocked("1111")
    assert renewed.reference.matches(b"1111")
