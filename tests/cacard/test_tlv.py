"""SimpleTLV as CAC cards write it, and the T-buffer/V-buffer split of an object
(libcacard's ``/simpletlv/*`` tests cover the same ground)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacard.tlv import (
    TLV,
    TLVError,
    ber_tlv,
    decode,
    encode,
    encode_header,
    iter_headers,
    join_buffers,
    split_buffers,
)


def test_short_lengths_take_one_byte_and_long_ones_ff_then_little_endian() -> None:
    assert encode_header(0x70, 0) == b"\x70\x00"
    assert encode_header(0x70, 254) == b"\x70\xfe"
    assert encode_header(0x70, 255) == b"\x70\xff\xff\x00"
    assert encode_header(0x70, 256) == bytes.fromhex("70 FF 00 01")
    assert TLV(0x01, b"\x10\x02\x06\x02\x03").to_bytes() == bytes.fromhex("0105 1002060203")


def test_decode_reads_what_encode_wrote() -> None:
    items = [TLV(0x71, b"\x00"), TLV(0x70, bytes(300)), TLV(0x72), TLV(0xFE)]
    assert decode(encode(items)) == items


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ("00 01 AA", "tag"),
        ("FF 01 AA", "tag"),
        ("70", "offset"),
        ("70 FF 00", "offset"),
        ("70 03 AA", "length"),
    ],
)
def test_bad_simpletlv_raises_naming_the_field(data: str, field: str) -> None:
    with pytest.raises(TLVError) as caught:
        decode(bytes.fromhex(data))
    assert caught.value.field == field


def test_tags_outside_01_to_fe_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="tag"):
        TLV(0x00)
    with pytest.raises(ValueError, match="tag"):
        TLV(0xFF)


def test_an_object_splits_into_t_and_v_buffers_with_length_prefixes() -> None:
    # libcacard's PKI object for a 256-byte certificate: 0A 00 71 01 70 FF 00 01 72 00 FE 00.
    cert = bytes(range(256))
    items = [TLV(0x71, b"\x00"), TLV(0x70, cert), TLV(0x72), TLV(0xFE)]
    tag_buffer, value_buffer = split_buffers(items)
    assert tag_buffer == bytes.fromhex("0A00 7101 70FF0001 7200 FE00")
    assert value_buffer == (257).to_bytes(2, "little") + b"\x00" + cert
    assert list(iter_headers(tag_buffer[2:])) == [(0x71, 1), (0x70, 256), (0x72, 0), (0xFE, 0)]
    assert join_buffers(tag_buffer, value_buffer) == items


def test_join_refuses_buffers_that_disagree() -> None:
    tag_buffer, value_buffer = split_buffers([TLV(0x01, b"ab")])
    with pytest.raises(TLVError, match="V-buffer"):
        join_buffers(tag_buffer, value_buffer + b"x")
    with pytest.raises(TLVError):
        join_buffers(tag_buffer, (1).to_bytes(2, "little") + b"a")


@given(st.lists(st.tuples(st.integers(1, 0xFE), st.binary(max_size=600)), max_size=8))
def test_any_item_list_survives_both_encodings(pairs: list[tuple[int, bytes]]) -> None:
    items = [TLV(tag, value) for tag, value in pairs]
    assert decode(encode(items)) == items
    assert join_buffers(*split_buffers(items)) == items


def test_ber_tlv_lengths() -> None:
    assert ber_tlv(0x84, b"\x01") == b"\x84\x01\x01"
    assert ber_tlv(0x9F7F, bytes(42))[:3] == b"\x9f\x7f\x2a"
    assert ber_tlv(0x53, bytes(200))[:3] == b"\x53\x81\xc8"
    assert ber_tlv(0x53, bytes(300))[:4] == b"\x53\x82\x01\x2c"
