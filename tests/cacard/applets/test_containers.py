"""Data objects (Person Instance...) and the empty applets of a CAC card."""

from __future__ import annotations

import pytest

from cacard.applets.containers import DataObjectId, data_applet
from cacard.tlv import TLV, TLVError, decode, join_buffers

from ..cards import hexsw, make_card, read_buffer, select, send

PERSON = bytes.fromhex("01 05") + b"Marie" + bytes.fromhex("03 06") + b"Turner"


def test_a_data_object_reads_back_as_the_simpletlv_it_was_given() -> None:
    card = make_card(data_objects={DataObjectId.PERSON_INSTANCE: PERSON})
    select(card, "A0 00 00 00 79 02 00")
    items = join_buffers(read_buffer(card, 1), read_buffer(card, 2))
    assert b"".join(item.to_bytes() for item in items) == PERSON


def test_data_objects_have_17_byte_tv_properties_with_simpletlv_buffers() -> None:
    card = make_card(data_objects={DataObjectId.PERSON_INSTANCE: PERSON})
    select(card, "A0 00 00 00 79 02 00")
    items = decode(send(card, "80 56 01 00 1D").data)
    assert items[2].tag == 0x50
    assert decode(items[2].value)[:2] == [
        TLV(0x41, b"\x02\x00"),
        TLV(0x42, bytes.fromhex("00 06 00 0D 00")),
    ]


@pytest.mark.parametrize("suffix", ["02 FB", "12 01", "12 02", "02 01", "02 FE", "02 FD"])
def test_data_objects_without_content_have_empty_buffers(suffix: str) -> None:
    card = make_card()
    select(card, "A0 00 00 00 79 " + suffix)
    assert read_buffer(card, 1) == b"\x00\x00"
    assert read_buffer(card, 2) == b"\x00\x00"
    assert hexsw(send(card, "00 A4 02 00 02 " + suffix)) == "9000"


@pytest.mark.parametrize("suffix", ["F0", "F1", "F2"])
def test_empty_applets_list_no_objects(suffix: str) -> None:
    card = make_card()
    select(card, "A0 00 00 00 79 02 " + suffix)
    assert send(card, "80 56 01 00 0A").data == bytes.fromhex("01 05 10 02 06 02 03 40 01 00")
    assert hexsw(send(card, "80 52 08 08 02 01 02")) == "6A86"


def test_the_access_control_file_has_four_empty_objects() -> None:
    card = make_card()
    select(card, "A0 00 00 01 16 30 00")
    for oid in ("30 00", "60 10", "60 30", "90 00"):
        assert hexsw(send(card, "00 A4 02 00 02 " + oid)) == "9000"
        assert read_buffer(card, 2) == b"\x00\x00"
    assert hexsw(send(card, "00 A4 02 00 02 90 90")) == "6A82"


def test_content_that_is_not_simpletlv_is_refused() -> None:
    with pytest.raises(TLVError):
        data_applet(DataObjectId.PERSONNEL, b"\x01\x05ab")
    assert DataObjectId.PERSONNEL.label == "Personnel"
    assert DataObjectId.GENERIC_1201.label == "Generic 1201"
