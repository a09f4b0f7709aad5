"""Which ATRs a host accepts: QEMU's probed results, minus its off-by-one."""

import pytest

from vscard import atr_problem

ATHENA = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


@pytest.mark.parametrize(
    "atr",
    ["3B00", "3F00", "3B02AABB", ATHENA.hex(), "3B" + "0F" + "00" * 15, "3B" + "00" * 36],
)
def test_atrs_qemu_accepts_are_accepted(atr: str) -> None:
    assert atr_problem(bytes.fromhex(atr)) is None


@pytest.mark.parametrize(
    ("atr", "why"),
    [
        ("3B", "shorter"),
        ("3B0F", "lacks"),
        ("3B02AA", "lacks"),
        ("3A00", "TS=0x3A"),
        ("3B" + "00" * 40, "exceeds 40"),
        ("3B80", "interface byte at offset 2 is missing"),
    ],
)
def test_atrs_qemu_refuses_are_refused_with_a_reason(atr: str, why: str) -> None:
    problem = atr_problem(bytes.fromhex(atr))
    assert problem is not None
    assert why in problem


def test_td_chain_is_walked_correctly_where_qemu_reads_one_byte_too_far() -> None:
    # T0=80: TD1 present, TD1=00 ends the chain; F0 is TCK. QEMU refuses this valid ATR.
    assert atr_problem(bytes.fromhex("3B8000F0")) is None


def test_td_chain_beyond_two_levels_is_checked() -> None:
    # TD1=80 -> TD2=80 -> TD3=01 (T=1) and one historical byte: 3B 81 80 80 01 AA
    assert atr_problem(bytes.fromhex("3B81808001AA")) is None
    assert atr_problem(bytes.fromhex("3B818080")) is not None
