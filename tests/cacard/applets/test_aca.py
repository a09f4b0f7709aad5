"""The ACA and GET ACR, with tables written as GSC-IS 2.1 lays them out.

libcacard's tables differ on purpose: it copies raw C structures into its ACR, service and AMP
entries (padding where AIDs belong), its AMP table is off by one, and it lists rules (ACRIDs
02, 04, 08-0B, 10, 11) that no applet enforces. This card's ACR table holds the three rules it
enforces: 00 always, 01 never, 06 PIN.
"""

from __future__ import annotations

import pytest

from cacard.card import Card
from cacard.tlv import TLV, decode

from ..cards import hexsw, make_card, select, send

ACA = "A0 00 00 00 79 03 00"
INFO = TLV(0x01, bytes.fromhex("10 02 06 02 02"))


@pytest.fixture
def card() -> Card:
    card = make_card(3)
    select(card, ACA)
    return card


def get_acr(card: Card, apdu: str) -> list[TLV]:
    answer = send(card, apdu)
    data = answer.data
    while answer.sw >> 8 == 0x61:
        answer = send(card, "00 C0 00 00 00")
        data += answer.data
    assert hexsw(answer) == "9000"
    items = decode(data)
    assert items[0] == INFO
    return items[1:]


def test_the_acr_table_lists_the_rules_the_card_enforces(card: Card) -> None:
    assert get_acr(card, "80 4C 00 00 00") == [
        TLV(0xA1, b"\x03"),
        TLV(0xA0, bytes.fromhex("00 00 00")),  # ACRID 00: always, no access method
        TLV(0xA0, bytes.fromhex("01 01 00")),  # ACRID 01: never
        TLV(0xA0, bytes.fromhex("06 06 01 1E 00")),  # ACRID 06: PIN (provider 1E, reference 00)
    ]


def test_one_acr_by_id(card: Card) -> None:
    assert get_acr(card, "80 4C 01 00 01 06 00") == [TLV(0xA0, bytes.fromhex("06 06 01 1E 00"))]
    assert hexsw(send(card, "80 4C 01 00 01 0F 00")) == "6A88"


def test_the_service_table_names_every_applet_by_its_full_aid(card: Card) -> None:
    items = get_acr(card, "80 4C 21 00 00")
    assert items[0] == TLV(0x94, bytes((len(items) - 1,)))
    entries = {item.value[0]: item.value for item in items[1:]}
    # Each entry: applet id, then tag 92 with the AID (libcacard puts struct bytes there).
    assert entries[0x61] == bytes.fromhex("61 92 07 A0 00 00 00 79 01 00")
    assert entries[0x63] == bytes.fromhex("63 92 07 A0 00 00 00 79 01 02")
    assert entries[0x4F] == bytes.fromhex("4F 92 07 A0 00 00 01 16 DB 00")
    assert 0x64 not in entries  # three PKI applets only
    assert len(entries) == 3 + 12


def test_the_amp_table_has_the_pin_provider(card: Card) -> None:
    assert get_acr(card, "80 4C 20 00 00") == [
        TLV(0x91, b"\x01"),
        TLV(0x90, bytes.fromhex("1E 92 07 A0 00 00 00 79 03 00")),
    ]


def test_the_applet_object_table_says_the_key_needs_the_pin(card: Card) -> None:
    assert hexsw(send(card, "80 4C 10 00 00")) == "6100"  # too big for one answer
    items = get_acr(card, "80 4C 10 00 00")
    assert items[0] == TLV(0x81, bytes((len(items) - 1,)))
    pki0 = next(item.value for item in items[1:] if item.value[0] == 0x61)
    assert pki0[1] == 2  # the certificate object and the applet-wide rules
    objects = decode(pki0[2:])
    # 52 READ BUFFER always, 58 UPDATE BUFFER never, 42 sign/decrypt after the PIN.
    assert objects[0] == TLV(0x82, bytes.fromhex("01 00  52 00 00  58 00 01  42 00 06"))
    assert objects[1].value[:2] == b"\xff\xff"


def test_one_applet_by_aid_and_one_object_by_id(card: Card) -> None:
    (applet,) = get_acr(card, "80 4C 11 00 07 A0 00 00 00 79 12 02")
    assert applet.tag == 0x80
    assert applet.value[0] == 0x45
    assert hexsw(send(card, "80 4C 11 00 07 A0 00 00 00 79 12 03")) == "6A88"
    (obj,) = get_acr(card, "80 4C 12 00 02 DB 00")
    assert obj == TLV(0x82, bytes.fromhex("DB 00 52 00 00 58 00 01"))
    assert hexsw(send(card, "80 4C 12 00 02 DB DB")) == "6A80"


@pytest.mark.parametrize(
    "apdu",
    [
        "80 4C 00 00 01 00",
        "80 4C 01 00 00",
        "80 4C 10 00 01 00",
        "80 4C 11 00 02 DB 00",
        "80 4C 12 00 01 DB",
        "80 4C 20 00 01 00",
        "80 4C 21 00 01 00",
    ],
)
def test_wrong_data_lengths_answer_6984(card: Card, apdu: str) -> None:
    assert hexsw(send(card, apdu)) == "6984"


@pytest.mark.parametrize("apdu", ["80 4C 00 FF", "80 4C 40 00", "80 4C 61 00", "80 4C 33 00"])
def test_other_tables_and_parameters_answer_6a86(card: Card, apdu: str) -> None:
    # P1 with bit 40: libcacard's undocumented compact forms, which this card does not guess at.
    assert hexsw(send(card, apdu)) == "6A86"


def test_the_aca_has_no_buffers_and_its_properties_are_its_applet_information(
    card: Card,
) -> None:
    assert hexsw(send(card, "80 52 00 00 02 01 02")) == "6D00"
    assert hexsw(send(card, "80 58 00 00 02 01 02")) == "6D00"
    assert send(card, "80 56 01 00 07").data == INFO.to_bytes()
