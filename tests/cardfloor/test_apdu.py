"""Command APDUs of every length case, short and extended, and response APDUs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardfloor.iso7816.apdu import (
    APDUFormatError,
    CommandAPDU,
    Response,
    StatusWord,
    bytes_remaining,
    is_valid_status,
    plain_class,
    status,
    success,
    verification_failed,
    wrong_le,
)

CASES = [
    ("00A40400", CommandAPDU(0x00, 0xA4, 0x04, 0x00), 1),
    ("00C000000D", CommandAPDU(0x00, 0xC0, 0, 0, le=13), 2),
    ("0084000000", CommandAPDU(0x00, 0x84, 0, 0, le=256), 2),
    ("00A4040002DB00", CommandAPDU(0x00, 0xA4, 4, 0, b"\xdb\x00"), 3),
    ("00A4040002DB0000", CommandAPDU(0x00, 0xA4, 4, 0, b"\xdb\x00", 256), 4),
    ("00A4040002DB00FF", CommandAPDU(0x00, 0xA4, 4, 0, b"\xdb\x00", 255), 4),
    ("0084000000000A", CommandAPDU(0x00, 0x84, 0, 0, le=10, extended=True), 2),
    ("00840000000000", CommandAPDU(0x00, 0x84, 0, 0, le=65536, extended=True), 2),
    ("80420000000002AABB", CommandAPDU(0x80, 0x42, 0, 0, b"\xaa\xbb", extended=True), 3),
    (
        "80420000000002AABB0100",
        CommandAPDU(0x80, 0x42, 0, 0, b"\xaa\xbb", 256, extended=True),
        4,
    ),
]


@pytest.mark.parametrize(("wire", "command", "case"), CASES, ids=[c[0] for c in CASES])
def test_every_length_case_parses_and_builds_back(
    wire: str, command: CommandAPDU, case: int
) -> None:
    raw = bytes.fromhex(wire)
    assert CommandAPDU.from_bytes(raw) == command
    assert command.to_bytes() == raw
    assert command.case == case


def test_an_extended_case_3_carries_256_bytes_of_data() -> None:
    raw = bytes.fromhex("80420000 000100") + bytes(256)
    command = CommandAPDU.from_bytes(raw)
    assert command.extended
    assert len(command.data) == 256
    assert command.le is None
    assert command.ne == 0


@pytest.mark.parametrize(
    ("wire", "field"),
    [
        ("", "length"),
        ("00A404", "length"),
        ("00A4040002DB", "Lc"),  # Lc 2, one byte
        ("00A4040002DB000000", "Lc"),  # Lc 2, three more bytes
        ("00A404000000", "length"),  # extended length cut short
        ("00A40400000000AA", "Lc"),  # extended Lc 0 followed by data
        ("00A40400000002AABBCC", "Lc"),  # extended Lc 2, then one byte too many for Le
    ],
)
def test_inconsistent_lengths_raise_a_typed_error_naming_the_field(wire: str, field: str) -> None:
    with pytest.raises(APDUFormatError) as caught:
        CommandAPDU.from_bytes(bytes.fromhex(wire))
    assert caught.value.field == field


def test_building_checks_bytes_and_lengths() -> None:
    with pytest.raises(ValueError, match="cla"):
        CommandAPDU(0x100, 0, 0, 0)
    with pytest.raises(ValueError, match="ins"):
        CommandAPDU(0, -1, 0, 0)
    with pytest.raises(ValueError, match="p1"):
        CommandAPDU(0, 0, 0x100, 0)
    with pytest.raises(ValueError, match="p2"):
        CommandAPDU(0, 0, 0, 0x100)
    with pytest.raises(ValueError, match="short"):
        CommandAPDU(0, 0, 0, 0, bytes(256))
    with pytest.raises(ValueError, match="le"):
        CommandAPDU(0, 0, 0, 0, le=257)
    assert CommandAPDU(0, 0, 0, 0, bytes(256), extended=True).to_bytes()[4:7] == b"\x00\x01\x00"


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=300),
    st.one_of(st.none(), st.integers(1, 65536)),
)
def test_any_command_survives_a_round_trip(ins: int, p1: int, data: bytes, le: int | None) -> None:
    extended = len(data) > 255 or (le is not None and le > 256)
    command = CommandAPDU(0x80, ins, p1, 0, data, le, extended)
    assert CommandAPDU.from_bytes(command.to_bytes()) == command


def test_responses_split_data_and_status_word() -> None:
    response = Response.from_bytes(bytes.fromhex("0102 9000"))
    assert response == Response(StatusWord.SUCCESS, b"\x01\x02")
    assert (response.sw1, response.sw2) == (0x90, 0x00)
    assert response.to_bytes() == bytes.fromhex("01029000")
    with pytest.raises(APDUFormatError):
        Response.from_bytes(b"\x90")


def test_status_word_families() -> None:
    assert bytes_remaining(13) == 0x610D
    assert bytes_remaining(256) == 0x6100
    assert bytes_remaining(4000) == 0x6100
    assert wrong_le(32) == 0x6C20
    assert verification_failed(2) == 0x63C2
    assert is_valid_status(0x9000)
    assert is_valid_status(0x6A82)
    assert not is_valid_status(0x9001)
    assert not is_valid_status(0x6000)


@pytest.mark.parametrize(
    ("cla", "chained", "plain"),
    [
        (0x00, False, 0x00),
        (0x10, True, 0x00),
        (0x13, True, 0x03),
        (0x1C, True, 0x00),
        (0x50, True, 0x40),
        (0x5F, True, 0x4F),
        (0x80, False, 0x80),
        (0x90, False, 0x90),
    ],
)
def test_chaining_is_read_from_interindustry_classes_only(
    cla: int, chained: bool, plain: int
) -> None:
    """CLA bit 10 chains an interindustry command; a proprietary class's bits are the card's."""
    assert CommandAPDU(cla, 0x20, 0x00, 0x80, b"1234").chained is chained
    assert plain_class(cla) == plain


@pytest.mark.parametrize("wire", [c[0] for c in CASES])
def test_a_parsed_command_is_the_frozen_value_its_constructor_builds(wire: str) -> None:
    # from_bytes builds commands field by field, skipping the constructor's checks.
    parsed = CommandAPDU.from_bytes(bytes.fromhex(wire))
    built = CommandAPDU(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(parsed)})
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert repr(parsed) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.p1 = 1  # type: ignore[misc]
    assert dataclasses.replace(parsed, p1=1) == dataclasses.replace(built, p1=1)


def test_status_and_success_build_ordinary_responses() -> None:
    assert status(StatusWord.FILE_NOT_FOUND) == Response(0x6A82)
    assert status(0x6A82).to_bytes() == bytes.fromhex("6A82")
    assert status(0x63C2) == Response(0x63C2)  # not a fixed status word: built on demand
    assert success(b"\x01") == Response(0x9000, b"\x01")
    assert success().to_bytes() == bytes.fromhex("9000")
    with pytest.raises(dataclasses.FrozenInstanceError):
        success().sw = 0x6F00  # type: ignore[misc]
