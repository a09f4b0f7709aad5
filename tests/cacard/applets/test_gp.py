"""The GlobalPlatform applet: its FCI and GET DATA."""

from __future__ import annotations

from cacard.applets.gp import cplc

from ..cards import CARD_ID, hexsw, make_card, send


def test_select_answers_the_isd_fci() -> None:
    card = make_card()
    assert hexsw(send(card, "00 A4 04 00 07 A0 00 00 00 03 00 00")) == "611B"
    fci = send(card, "00 C0 00 00 1B").data
    assert fci == bytes.fromhex(
        "6F 19 84 08 A0 00 00 00 03 00 00 00 A5 0D 9F 6E 06 12 91 51 81 01 00 9F 65 01 FF"
    )


def test_get_data_cplc_is_45_bytes_with_this_cards_serial() -> None:
    card = make_card()
    send(card, "00 A4 04 0C 07 A0 00 00 00 03 00 00")
    answer = send(card, "00 CA 9F 7F 00")
    assert (len(answer.data), hexsw(answer)) == (45, "9000")
    assert answer.data[:3] == bytes.fromhex("9F 7F 2A")
    assert answer.data[15:21] == CARD_ID[-6:]
    assert any(answer.data[15:21])
    assert cplc(bytes(13) + b"\x01") != cplc(bytes(14))


def test_get_data_card_recognition_data() -> None:
    card = make_card()
    send(card, "00 A4 04 0C 07 A0 00 00 00 03 00 00")
    answer = send(card, "00 CA 00 66 00")
    assert len(answer.data) == 51
    assert answer.data[:4] == bytes.fromhex("66 31 73 2F")
    assert bytes.fromhex("06 07 2A 86 48 86 FC 6B 01") in answer.data  # GP card recognition


def test_other_data_and_instructions_are_refused() -> None:
    card = make_card()
    send(card, "00 A4 04 0C 07 A0 00 00 00 03 00 00")
    assert hexsw(send(card, "00 CA 00 01 00")) == "6A88"
    assert hexsw(send(card, "80 52 00 00 02 01 02")) == "6D00"
    assert hexsw(send(card, "00 A4 02 00 02 DB 00")) == "6A81"
