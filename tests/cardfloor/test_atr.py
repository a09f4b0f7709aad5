"""One ATR parser: every byte T0 and the TDi announce in its place, TCK and what follows kept
apart, and a refusal that names the field and its value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardfloor.iso7816.atr import ATRFormatError, InterfaceBytes, parse_atr

# QEMU's default ATR: TA1 18, TC1 FF, T=0 then T=1 (TA3 FE) then T=15, and TCK 08.
QEMU_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


def test_the_td_chain_is_walked_to_its_end() -> None:
    atr = parse_atr(QEMU_ATR)
    assert atr.groups == (
        InterfaceBytes(TA=0x18, TC=0xFF, TD=0x80),
        InterfaceBytes(TD=0x91),
        InterfaceBytes(TA=0xFE, TD=0x1F),
        InterfaceBytes(TA=0xC3),
    )
    assert atr.historical == bytes.fromhex("8073C82113")
    assert (atr.tck, atr.trailing) == (0x08, b"")
    assert atr.protocols == (0, 1, 15)
    assert atr.transmission_protocols == (0, 1)


def test_tck_is_needed_and_checked_only_beyond_t0() -> None:
    assert not parse_atr(bytes.fromhex("3B00")).needs_tck
    assert parse_atr(QEMU_ATR).needs_tck
    assert parse_atr(QEMU_ATR).tck_expected == 0x08
    assert parse_atr(QEMU_ATR + b"\x00").trailing == b"\x00"


@pytest.mark.parametrize(
    ("atr", "field", "value"),
    [
        ("3B", "length", 1),
        ("3C00", "TS", 0x3C),
        ("3B80", "offset", 2),
        ("3B818080", "offset", 4),
        ("3B02AA", "length", 3),
        ("3B" + "00" * 33, "length", 34),
    ],
)
def test_a_broken_atr_is_refused_naming_the_field_and_its_value(
    atr: str, field: str, value: int
) -> None:
    with pytest.raises(ATRFormatError) as caught:
        parse_atr(bytes.fromhex(atr))
    assert (caught.value.field, caught.value.value) == (field, value)


def test_the_size_limit_is_the_callers() -> None:
    assert parse_atr(bytes.fromhex("3B" + "00" * 39), max_size=40).historical == b""


@given(st.binary(max_size=40))
def test_any_bytes_are_parsed_or_refused_with_a_typed_error(atr: bytes) -> None:
    try:
        parsed = parse_atr(atr)
    except ATRFormatError:
        return
    assert parsed.raw == atr
    assert parsed.protocols
