"""The card's ATR: libcacard's (T=0), the one that offers T=1 as well, and ATRs given by hand."""

from __future__ import annotations

from functools import reduce
from operator import xor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacard.atr import (
    CAC_ATR,
    CAC_ATR_T1,
    NAMED_ATRS,
    ATRError,
    atr_from_name,
    atr_problem,
    protocols,
)
from cardfloor.iso7816.atr import parse_atr
from vscard.atr import atr_problem as host_atr_problem

#: QEMU's usb-ccid ATR before any card speaks: T=0 and T=1 (TD2 = 91), then T=15.
QEMU_DEFAULT_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


def test_libcacard_atr_offers_t0_only() -> None:
    assert protocols(CAC_ATR) == (0,)
    assert atr_problem(CAC_ATR) is None


def test_the_t1_atr_keeps_t0_as_default_and_offers_t1() -> None:
    # A reader with T=0 only (QEMU's usb-ccid) falls back to the default T=0.
    assert protocols(CAC_ATR_T1) == (0, 1)
    assert atr_problem(CAC_ATR_T1) is None
    assert reduce(xor, CAC_ATR_T1[1:]) == 0  # TCK


def test_the_t1_atr_is_libcacards_with_td1_td2_and_tck_added() -> None:
    # TA1 TB1 TC1 and the historical bytes stay: "sfte cd144".
    assert CAC_ATR_T1[2:5] == CAC_ATR[2:5]
    assert CAC_ATR_T1[-11:-1] == CAC_ATR[-10:] == b"sfte cd144"
    assert CAC_ATR_T1[5:9] == bytes.fromhex("80 31 FE 45")  # TD1 T=0, TD2 T=1, IFSC 254, BWI 4


def test_a_reader_parses_the_t1_atr_as_the_card_means_it() -> None:
    atr = parse_atr(CAC_ATR_T1)
    assert atr.protocols == (0, 1)
    assert atr.default_protocol == 0
    assert atr.historical == b"sfte cd144"


def test_a_vscard_host_accepts_both() -> None:
    assert host_atr_problem(CAC_ATR) is None
    assert host_atr_problem(CAC_ATR_T1) is None


def test_global_bytes_are_not_a_protocol() -> None:
    assert protocols(QEMU_DEFAULT_ATR) == (0, 1)
    assert atr_problem(QEMU_DEFAULT_ATR) is None


@pytest.mark.parametrize(
    ("text", "atr"),
    [
        ("cac", CAC_ATR),
        ("cac-t1", CAC_ATR_T1),
        ("CAC-T1", CAC_ATR_T1),
        ("3B 7A 18 00 00 73 66 74 65 20 63 64 31 34 34", CAC_ATR),
        ("3b:fa:18:00:00:80:31:fe:45:73:66:74:65:20:63:64:31:34:34:fa", CAC_ATR_T1),
    ],
)
def test_an_atr_is_given_by_name_or_in_hex(text: str, atr: bytes) -> None:
    assert atr_from_name(text) == atr


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("t2", "neither a known name"),
        ("3B02AA", "lacks the 2 historical bytes"),
        ("3BFA1800008031FE4573667465206364313434", "needs a TCK"),
        ("3BFA1800008031FE4573667465206364313434FB", "TCK=0xFB is wrong, 0xFA"),
        ("3BFA1800008031FE4573667465206364313434FA00", "1 bytes follow TCK"),
    ],
)
def test_an_atr_a_card_cannot_have_is_refused_saying_why(text: str, reason: str) -> None:
    with pytest.raises(ATRError, match=reason) as caught:
        atr_from_name(text)
    assert caught.value.field == "atr"


def test_the_names_are_cac_cac_t1_and_piv() -> None:
    assert set(NAMED_ATRS) == {"cac", "cac-t1", "piv"}
    # Every named ATR but libcacard's offers T=1, T=0 first.
    assert {name: protocols(atr) for name, atr in NAMED_ATRS.items()} == {
        "cac": (0,),
        "cac-t1": (0, 1),
        "piv": (0, 1),
    }


@given(st.binary(max_size=40))
def test_any_bytes_get_an_answer_never_an_exception(atr: bytes) -> None:
    problem = atr_problem(atr)
    assert problem is None or isinstance(problem, str)
    if problem is None:
        assert protocols(atr)
