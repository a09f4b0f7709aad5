"""What every CAC applet does: object SELECT, GET PROPERTIES, READ BUFFER, and the refusals."""

from __future__ import annotations

import pytest

from cacard.applets.cac import CACApplet, CardObject
from cacard.card import Card
from cacard.tlv import TLV, decode, join_buffers

from ..cards import hexsw, make_card, pin_state, read_buffer, select, send

CCC = "A0 00 00 01 16 DB 00"


@pytest.fixture
def card() -> Card:
    card = make_card()
    select(card, CCC)
    return card


def test_properties_objects_are_17_bytes_so_opensc_accepts_them(card: Card) -> None:
    # OpenSC (card-cac.c) skips a 50/51 object unless it is exactly 17 bytes; libcacard's are
    # 14 and 20 bytes, which is why OpenSC cannot read libcacard's data objects.
    assert hexsw(send(card, "80 56 01 00 00")) == "6C1D"
    answer = send(card, "80 56 01 00 1D")
    items = decode(answer.data)
    assert [item.tag for item in items] == [0x01, 0x40, 0x50]
    assert items[0].value == bytes.fromhex("10 02 06 02 03")
    assert items[1].value == b"\x01"
    assert len(items[2].value) == 17
    inner = decode(items[2].value)
    assert [item.tag for item in inner] == [0x41, 0x42, 0x43]
    assert inner[0].value == b"\xdb\x00"
    assert inner[1].value == bytes.fromhex("00 3600 0C01")  # SimpleTLV; T and V sizes (LE)
    assert inner[2].value == bytes(4)  # no key


def test_buffer_sizes_in_the_properties_match_what_read_buffer_returns(card: Card) -> None:
    inner = decode(decode(send(card, "80 56 01 00 1D").data)[2].value)
    t_size = int.from_bytes(inner[1].value[1:3], "little")
    v_size = int.from_bytes(inner[1].value[3:5], "little")
    assert len(read_buffer(card, 1)) == t_size
    assert len(read_buffer(card, 2)) == v_size


def test_properties_by_tag_come_back_in_request_order_with_duplicates(card: Card) -> None:
    assert hexsw(send(card, "80 56 02 00 02 01 01 00")) == "6C0E"
    assert hexsw(send(card, "80 56 02 00 03 40 01 40 00")) == "6C0D"
    answer = send(card, "80 56 02 00 03 40 01 40 0D")
    assert answer.data == bytes.fromhex("40 01 01  01 05 10 02 06 02 03  40 01 01")


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80 56 00 00 00", "6A86"),
        ("80 56 01 00 02 01 01 00", "6984"),
        ("80 56 01 01 00", "6A86"),
        ("80 56 02 00 00", "6984"),
        ("80 56 02 00 02 00 FF 00", "6A88"),
        ("80 56 88 00 00", "6A86"),
    ],
)
def test_bad_get_properties(card: Card, apdu: str, sw: str) -> None:
    assert hexsw(send(card, apdu)) == sw


def test_no_le_means_61xx_and_too_large_a_short_le_means_6cxx(card: Card) -> None:
    assert hexsw(send(card, "80 56 01 00")) == "611D"
    assert hexsw(send(card, "80 56 01 00 FF")) == "6C1D"
    assert hexsw(send(card, "80 56 01 00 00 00 FF")) == "9000"  # extended Le: data as is


def test_select_object_switches_what_read_buffer_reads() -> None:
    objects = [
        CardObject.from_items(b"\x00\x01", [TLV(0x01, b"one")]),
        CardObject.from_items(b"\x00\x02", [TLV(0x02, b"two!")]),
    ]
    card = Card([CACApplet(b"\xa0\x00\x00\x00\x79\x7f\x7f", "two", objects)], pin_state())
    select(card, "A0 00 00 00 79 7F 7F")
    assert join_buffers(read_buffer(card, 1), read_buffer(card, 2)) == [TLV(0x01, b"one")]
    assert hexsw(send(card, "00 A4 02 00 02 00 02")) == "9000"
    assert join_buffers(read_buffer(card, 1), read_buffer(card, 2)) == [TLV(0x02, b"two!")]


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("00 A4 02 00 02 DB DB", "6A82"),
        ("00 A4 02 00 00", "6984"),
        ("00 A4 02 00 07 A0 00 00 01 16 DB 00", "6984"),
        ("00 A4 01 00 02 DB 00", "6A81"),
    ],
)
def test_bad_object_selects(card: Card, apdu: str, sw: str) -> None:
    assert hexsw(send(card, apdu)) == sw


@pytest.mark.parametrize(
    ("apdu", "sw"),
    [
        ("80 52 00 00 00", "6984"),
        ("80 52 00 00 04 01 02 03 04", "6984"),
        ("80 52 00 00 02 06 02", "6984"),
        ("80 52 08 08 02 01 02", "6A86"),
    ],
)
def test_bad_read_buffer(card: Card, apdu: str, sw: str) -> None:
    assert hexsw(send(card, apdu)) == sw


def test_read_buffer_returns_what_is_left_and_nothing_at_the_end(card: Card) -> None:
    size = len(read_buffer(card, 1))
    tail = send(card, f"80 52 00 {size - 3:02X} 02 01 FF 00")
    assert (len(tail.data), hexsw(tail)) == (3, "9000")
    end = send(card, f"80 52 00 {size:02X} 02 01 10 00")
    assert (end.data, hexsw(end)) == (b"", "9000")


def test_update_buffer_is_not_allowed_and_other_instructions_not_supported(card: Card) -> None:
    assert hexsw(send(card, "80 58 00 00 02 01 02")) == "6900"
    assert hexsw(send(card, "80 4C 00 00 00")) == "6D00"  # GET ACR belongs to the ACA
    assert hexsw(send(card, "80 42 00 00 02 00 01")) == "6D00"  # only PKI applets sign
    assert hexsw(send(card, "00 CB 3F FF 05 5C 03 5F C1 07 00")) == "6D00"


def test_verify_and_get_challenge_reach_the_card_through_a_cac_applet(card: Card) -> None:
    assert hexsw(send(card, "00 20 00 00")) == "63C3"
    assert len(send(card, "00 84 00 00 08").data) == 8


def test_object_ids_are_two_bytes_and_unique() -> None:
    with pytest.raises(ValueError, match="2 bytes"):
        CardObject.from_items(b"\x01", [])
    obj = CardObject.from_items(b"\x01\x02", [])
    with pytest.raises(ValueError, match="unique"):
        CACApplet(b"\xa0", "dup", [obj, obj])
