"""The CCC: what OpenSC reads first, and how it learns the card's serial and objects."""

from __future__ import annotations

from cacard.applets.ccc import FIXED_CARD_URLS, ccc_applet, cuid
from cacard.tlv import join_buffers

from ..cards import CARD_ID, hexsw, make_card, read_buffer, select, send

CCC = "A0 00 00 01 16 DB 00"


def test_opensc_finds_the_card_by_selecting_the_ccc_with_p2_0c() -> None:
    card = make_card()
    assert hexsw(send(card, "00 A4 04 0C 07 " + CCC)) == "9000"


def test_the_t_buffer_has_libcacards_layout() -> None:
    card = make_card(3)
    select(card, CCC)
    expected = (
        "34 00 F0 15 F1 01 F2 01"
        + " F3 10" * 14
        + " F4 01 F5 01 F6 11 F7 00 FA 00 FB 00 FC 00 FD 00 FE 00"
    )
    assert read_buffer(card, 1) == bytes.fromhex(expected)
    assert len(read_buffer(card, 2)) == 2 + 266


def test_the_cuid_carries_this_cards_id() -> None:
    card = make_card()
    select(card, CCC)
    items = join_buffers(read_buffer(card, 1), read_buffer(card, 2))
    assert items[0].tag == 0xF0
    assert items[0].value == bytes.fromhex("A0 00 00 00 79 03 02") + CARD_ID
    assert items[0].value == cuid(CARD_ID)


def test_two_cards_have_different_cuids() -> None:
    # libcacard gives every card the same CUID; OpenSC's cache then mixes cards up.
    one = ccc_applet(bytes(14), 1).objects[b"\xdb\x00"].value_buffer
    two = ccc_applet(bytes(13) + b"\x01", 1).objects[b"\xdb\x00"].value_buffer
    assert one != two


def test_one_pki_card_url_per_certificate_after_the_fixed_ones() -> None:
    card = make_card(3)
    select(card, CCC)
    items = join_buffers(read_buffer(card, 1), read_buffer(card, 2))
    urls = [item.value for item in items if item.tag == 0xF3]
    assert len(urls) == len(FIXED_CARD_URLS) + 3
    assert all(len(url) == 16 for url in urls)
    assert urls[-3:] == [
        bytes.fromhex(f"A0 00 00 00 79 04 01 0{i} 01 0{i}") + bytes(6) for i in range(3)
    ]
    # Type 01 for the data objects OpenSC knows: PKI Certificate, Person Instance...
    assert urls[1][:10] == bytes.fromhex("A0 00 00 00 79 01 02 FE 02 FE")
    assert urls[3][:10] == bytes.fromhex("A0 00 00 00 79 01 02 00 02 00")


def test_empty_tags_come_last_so_opensc_stops_before_them() -> None:
    card = make_card()
    select(card, CCC)
    items = join_buffers(read_buffer(card, 1), read_buffer(card, 2))
    first_empty = next(i for i, item in enumerate(items) if not item.value)
    assert all(not item.value for item in items[first_empty:])
    assert items[first_empty - 1].tag == 0xF6
