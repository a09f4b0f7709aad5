"""vscclient's -e grammar: libcacard's seed syntax parses, and its silent fallbacks are errors."""

from __future__ import annotations

import pytest

from cacard.profile import Applications
from daemons.emul_options import (
    EmulOptions,
    EmulOptionsError,
    HardwareType,
    SoftReader,
    UseHardware,
    parse_emul_options,
    soft_reader_for_nicknames,
)


def test_the_seed_syntax_from_qemus_docs() -> None:
    options = parse_emul_options('db="sql:/tmp/db" use_hw=no soft=(,Test,CAC,,cert1,cert2,cert3)')
    assert options == EmulOptions(
        db="sql:/tmp/db",
        use_hw=UseHardware.NO,
        soft_readers=(SoftReader("", "Test", ("cert1", "cert2", "cert3")),),
    )


def test_reader_names_may_contain_spaces_and_items_may_span_lines() -> None:
    options = parse_emul_options(
        'use_hw=no\n db="sql:/p"\nsoft=(,Virtual Reader,cac,,id-cert, signing-cert ,)'
    )
    (reader,) = options.soft_readers
    assert reader.name == "Virtual Reader"
    # The empty name after the trailing comma (as -c builds it) is ignored, blanks stripped.
    assert reader.certificates == ("id-cert", "signing-cert")


def test_several_soft_readers_and_a_token_slot() -> None:
    options = parse_emul_options("use_hw=no soft=(,A,CAC,,c1) ,soft=(My Token,B,CAC,x,c2)")
    assert [r.name for r in options.soft_readers] == ["A", "B"]
    assert options.soft_readers[1].slot == "My Token"
    assert options.soft_readers[1].params == "x"


@pytest.mark.parametrize(
    ("text", "use_hw", "hw_type"),
    [
        ("", UseHardware.YES, HardwareType.CAC),
        ("use_hw=no", UseHardware.NO, HardwareType.CAC),
        ("use_hw=false", UseHardware.NO, HardwareType.CAC),  # C reads "false" as yes
        ("use_hw=removable", UseHardware.REMOVABLE, HardwareType.CAC),
        ("hw_type=passthru use_hw=yes", UseHardware.YES, HardwareType.PASSTHRU),  # any order
        ("nssemul", UseHardware.YES, HardwareType.CAC),
        ("passthru", UseHardware.YES, HardwareType.PASSTHRU),
    ],
)
def test_hardware_options(text: str, use_hw: UseHardware, hw_type: HardwareType) -> None:
    options = parse_emul_options(text)
    assert (options.use_hw, options.hw_type) == (use_hw, hw_type)


def test_default_database_is_libcacards() -> None:
    assert parse_emul_options("").database == "/etc/pki/nssdb"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("db=/etc/pki/nssdb", "quoted"),
        ('db="a" db="b"', "twice"),
        ("use_hw=maybe", "'maybe'"),
        ("hw_type=PIV", "'PIV'"),
        ("soft=(,Reader,CAC,,cert1", "closing parenthesis"),
        ("soft=(,Reader,PASSTHRU,,cert1)", "'PASSTHRU'.*CAC, PIV or CAC\\+PIV"),
        ("soft=(,Reader,PIV+CAC,,cert1)", "'PIV\\+CAC'"),
        ("soft=(,Reader,,,cert1)", "''"),
        ("soft=(,Reader,p\u0131v,,cert1)", "'p\u0131v'"),  # dotless i: upper-cases to PIV
        ("soft=(,Reader,CAC,)", "at least one certificate"),
        ("soft=(,Reader,CAC,,,)", "names no certificate"),
        ("soft=,Reader", "soft= needs"),
        ("frobnicate", "'frobnicate'"),
        ("passthru soft=(,R,CAC,,c)", "simultaneously"),
    ],
)
def test_malformed_options_say_which_item_is_wrong(text: str, message: str) -> None:
    with pytest.raises(EmulOptionsError, match=message.replace("(", r"\(")):
        parse_emul_options(text)


def test_dash_c_nicknames_become_one_virtual_reader() -> None:
    assert soft_reader_for_nicknames(["a", "b", ""]) == SoftReader("", "Virtual Reader", ("a", "b"))


@pytest.mark.parametrize(
    ("card_type", "applications"),
    [
        ("CAC", Applications.CAC),
        ("cac", Applications.CAC),
        ("PIV", Applications.PIV),
        (" piv ", Applications.PIV),
        ("CAC+PIV", Applications.CAC_PIV),
        ("Cac+Piv", Applications.CAC_PIV),
    ],
)
def test_the_card_type_of_a_soft_reader_is_its_profile(
    card_type: str, applications: Applications
) -> None:
    (reader,) = parse_emul_options(f"use_hw=no soft=(,R,{card_type},,c1)").soft_readers
    assert reader.applications is applications


def test_each_soft_reader_has_its_own_card_type() -> None:
    options = parse_emul_options("soft=(,A,PIV,,c1) soft=(,B,CAC,,c2) soft=(,C,cac+piv,,c3)")
    assert [r.applications for r in options.soft_readers] == [
        Applications.PIV,
        Applications.CAC,
        Applications.CAC_PIV,
    ]


def test_dash_c_nicknames_take_the_profile_they_are_given() -> None:
    reader = soft_reader_for_nicknames(["a"], Applications.PIV)
    assert reader == SoftReader("", "Virtual Reader", ("a",), "", Applications.PIV)
