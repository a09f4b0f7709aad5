"""The Microsoft plug-and-play applet."""

from __future__ import annotations

from cacard.applets.msft import card_id_data

from ..cards import hexsw, make_card, send

MSFT = "A0 00 00 03 97 43 49 44 5F 01 00"


def test_get_data_7f68_answers_the_31_byte_card_identifier() -> None:
    card = make_card()
    assert hexsw(send(card, "00 A4 04 00 0B " + MSFT)) == "6111"
    answer = send(card, "00 CA 7F 68 00")
    assert (len(answer.data), hexsw(answer)) == (31, "9000")
    assert answer.data[:11] == bytes.fromhex("30 1D 02 01 00 16 04") + b"MSFT"
    assert answer.data[11:15] == bytes.fromhex("30 12 04 10")


def test_the_identifier_differs_from_card_to_card() -> None:
    assert card_id_data(bytes(14)) != card_id_data(bytes(13) + b"\x01")


def test_the_pin_status_query_needs_no_windows_switch() -> None:
    # libcacard answers 9000 (or 6A88) until this GET DATA, then 63C3. This card always says
    # 63Cx until the PIN is verified.
    card = make_card()
    assert hexsw(send(card, "00 20 00 00")) == "63C3"
    send(card, "00 A4 04 0C 0B " + MSFT)
    send(card, "00 CA 7F 68 00")
    assert hexsw(send(card, "00 20 00 00")) == "63C3"
    assert hexsw(send(card, "00 CA 7F 69 00")) == "6A88"
