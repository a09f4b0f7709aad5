"""The reader refuses ATRs libccid cannot take and derives protocol parameters from the rest."""

from __future__ import annotations

import pytest

from cardfloor.iso7816.atr import parse_atr
from ccid.card import TEST_ATR
from ccid.parameters import ProtocolParameters

# QEMU's default ATR: TA1 18, TC1 FF, T=0 then T=1 (TA3 FE) then T=15.
QEMU_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")
# libcacard's CAC ATR: TA1 TB1 TC1 and ten historical bytes, no TD1, so T=0 only.
CAC_ATR = bytes.fromhex("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34")


def test_atr_without_td1_offers_t0_only() -> None:
    atr = parse_atr(CAC_ATR)
    assert atr.protocols == (0,)
    assert atr.default_protocol == 0
    assert atr.historical == b"sfte cd144"


def test_protocols_are_read_from_the_whole_td_chain() -> None:
    atr = parse_atr(QEMU_ATR)
    assert atr.protocols == (0, 1, 15)
    assert atr.default_protocol == 0
    assert atr.global_byte("TA", 1) == 0x18
    assert atr.protocol_byte("TA", 1) == 0xFE


def test_test_card_atr_offers_t1_with_its_ifsc_and_waiting_times() -> None:
    atr = parse_atr(TEST_ATR)
    assert atr.protocols == (1,)
    assert ProtocolParameters.from_atr(atr) == ProtocolParameters(
        1, bytes.fromhex("11 10 00 45 00 FE 00")
    )


def test_t0_parameters_take_ta1_tc1_and_tc2_or_the_defaults() -> None:
    assert ProtocolParameters.from_atr(parse_atr(QEMU_ATR)) == ProtocolParameters(
        0, bytes.fromhex("18 00 FF 0A 00")
    )
    assert ProtocolParameters.from_atr(parse_atr(bytes.fromhex("3B00"))) == ProtocolParameters(
        0, bytes.fromhex("11 00 00 0A 00")
    )


def test_inverse_convention_and_crc_show_in_bmtccks() -> None:
    # TS 3F, TD1 T=1 with TD2, TD2 T=1 with TC3 = 01 (CRC).
    atr = parse_atr(bytes.fromhex("3F 80 81 41 01 00"))
    assert ProtocolParameters.from_atr(atr).abProtocolDataStructure[1] == 0x13


def test_specific_mode_ta2_chooses_the_protocol() -> None:
    # TD1 announces TA2 (specific mode, T=1) and offers T=0 first.
    atr = parse_atr(bytes.fromhex("3B 80 10 81"))
    assert atr.protocols == (0,)
    assert atr.default_protocol == 1


@pytest.mark.parametrize(
    ("atr", "reason"),
    [
        ("3B", "shorter than TS and T0"),
        ("3B" + "00" * 33, "exceeds 33"),
        ("3C00", "TS=0x3C"),
        ("3B10", "offset 2 is missing"),
        ("3B8080", "offset 3 is missing"),
        ("3B02AA", "lacks the 2 historical bytes"),
    ],
)
def test_atrs_libccid_cannot_take_are_refused_with_the_reason(atr: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_atr(bytes.fromhex(atr))


def test_parameters_refuse_a_structure_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="5 bytes"):
        ProtocolParameters(0, b"\x00" * 7)
    with pytest.raises(ValueError, match="neither"):
        ProtocolParameters(2, b"")
