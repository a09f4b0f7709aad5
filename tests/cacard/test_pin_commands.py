"""Which commands spend a PIN or PUK try, in every encoding the card's parser accepts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cacard.pin_commands import Counter, CounterKind, pin_attempt
from cardfloor.iso7816.apdu import APDUFormatError, CommandAPDU, plain_class
from cardfloor.iso7816.instructions import ENVELOPE_INSTRUCTIONS, PIN_INSTRUCTIONS
from cardfloor.iso7816.trace import apdu_trace

PIN = b"11111111"


def encode(cla: int, ins: int, p1: int, p2: int, data: bytes, *, extended: bool) -> bytes:
    return CommandAPDU(cla, ins, p1, p2, data, extended=extended).to_bytes()


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize(
    ("cla", "probe_cla", "chained"),
    [
        (0x00, 0x00, False),
        (0x03, 0x03, False),  # channel 3
        (0x0C, 0x00, False),  # secure messaging: asked in plain
        (0x10, 0x00, True),  # chained
        (0x13, 0x03, True),
        (0x45, 0x45, False),  # further interindustry, channel 9
        (0x75, 0x45, True),  # ... with secure messaging and chaining
        (0x80, 0x80, False),  # proprietary classes are the card's own
        (0x84, 0x84, False),
        (0x90, 0x90, False),
        (0xFF, 0xFF, False),
    ],
)
def test_a_verify_with_data_spends_a_try_of_its_reference_in_every_class(
    cla: int, probe_cla: int, chained: bool, extended: bool
) -> None:
    attempt = pin_attempt(encode(cla, 0x20, 0x00, 0x80, PIN, extended=extended))
    assert attempt is not None
    assert attempt.counter == Counter(probe_cla, CounterKind.REFERENCE, 0x80)
    assert attempt.chained is chained
    assert attempt.counter.probe == bytes((probe_cla, 0x20, 0x00, 0x80))
    assert attempt.counter.logout == bytes((probe_cla, 0x20, 0xFF, 0x80))


@pytest.mark.parametrize("ins", [0x21, 0x24, 0x25])
def test_odd_verify_and_change_reference_data_spend_a_try_of_p2(ins: int) -> None:
    attempt = pin_attempt(encode(0x00, ins, 0x00, 0x00, PIN * 2, extended=True))
    assert attempt is not None
    assert attempt.counter == Counter(0x00, CounterKind.REFERENCE, 0x00)


@pytest.mark.parametrize(("ins", "p1"), [(0x2C, 0x00), (0x2C, 0x01), (0x2D, 0x00), (0x2C, 0x07)])
def test_reset_retry_counter_with_a_resetting_code_spends_a_puk_try(ins: int, p1: int) -> None:
    """The PUK's counter is not P2's and no VERIFY asks for it."""
    attempt = pin_attempt(encode(0x00, ins, p1, 0x80, PIN * 2, extended=False))
    assert attempt is not None
    assert attempt.counter == Counter(0x00, CounterKind.RESETTING_CODE, 0x80)
    assert attempt.counter.probe is None


@pytest.mark.parametrize(
    "apdu",
    [
        "00200080",  # VERIFY without data: asks for the counter
        "0020008000",  # ... with Le
        "00200080000000",  # ... extended Le
        "0020FF80",  # resets the security status
        "002C038000",  # RESET RETRY COUNTER without a resetting code
        "002C020008" + PIN.hex(),
        "00A4040007A0000000790100",
        "00CA7F6800",
    ],
)
def test_commands_that_compare_nothing_spend_nothing(apdu: str) -> None:
    assert pin_attempt(bytes.fromhex(apdu)) is None


def test_a_chained_chunk_counts_even_without_data() -> None:
    attempt = pin_attempt(bytes.fromhex("10200080"))
    assert attempt is not None
    assert attempt.chained


@pytest.mark.parametrize(
    "apdu",
    [
        "0020",  # a lenient card pads it to 00 20 00 00
        "002000",
        "00200000000008" + PIN.hex() + "000000",  # vicc reads a 3-byte extended Le
        "0020000009" + PIN.hex(),  # Lc longer than the data
        "002400000000",  # truncated extended length
    ],
)
def test_a_pin_command_the_parser_rejects_is_an_error_not_a_pass(apdu: str) -> None:
    with pytest.raises(APDUFormatError) as error:
        pin_attempt(bytes.fromhex(apdu))
    assert error.value.field in {"length", "Lc"}


def test_malformed_bytes_of_other_instructions_are_not_judged() -> None:
    assert pin_attempt(bytes.fromhex("00B0000009")) is None  # a case 2 READ BINARY
    assert pin_attempt(bytes.fromhex("00CA00000500")) is None  # bad Lc: the card answers it
    assert pin_attempt(b"\x00") is None


@given(
    ins=st.sampled_from(sorted(ENVELOPE_INSTRUCTIONS)),
    inner=st.binary(min_size=1, max_size=300),
    extended=st.booleans(),
)
def test_no_envelope_shows_its_data_in_a_trace(ins: int, inner: bytes, extended: bool) -> None:
    """The data may be a VERIFY, or the middle of one with no header to tell."""
    extended = extended or len(inner) > 255
    apdu = CommandAPDU(0x00, ins, 0x00, 0x00, inner, extended=extended).to_bytes()
    assert apdu_trace(apdu) == f"{apdu[:5].hex()}<{len(apdu) - 5} bytes masked>"


@given(
    cla=st.integers(0, 0xFF),
    ins=st.sampled_from(sorted(PIN_INSTRUCTIONS)),
    p1=st.integers(0, 0xFF),
    p2=st.integers(0, 0xFF),
    pin=st.binary(min_size=1, max_size=300),
    le=st.none() | st.integers(1, 256),
    extended=st.booleans(),
)
def test_no_encoding_shows_pin_bytes_in_a_trace(
    cla: int, ins: int, p1: int, p2: int, pin: bytes, le: int | None, extended: bool
) -> None:
    extended = extended or len(pin) > 255
    apdu = CommandAPDU(cla, ins, p1, p2, pin, le, extended=extended).to_bytes()
    trace = apdu_trace(apdu)
    # The header and the first length byte stay; nothing after them is shown.
    assert trace == f"{apdu[:5].hex()}<{len(apdu) - 5} bytes masked>"


@given(st.integers(0, 0xFF))
def test_the_probe_class_keeps_the_channel_and_drops_chaining(cla: int) -> None:
    probe = plain_class(cla)
    assert plain_class(probe) == probe
    if cla < 0x80:
        assert not probe & 0x10
        assert probe & 0x40 == cla & 0x40
        assert probe & (0x0F if cla & 0x40 else 0x03) == cla & (0x0F if cla & 0x40 else 0x03)


# PIV (SP 800-73-4 part 2 §3.2): what each command spends, and how its counter is asked for.
PUK = b"12345678"
PIV_COMMANDS = {
    "VERIFY 80 (application PIN)": (0x20, 0x80, PIN, CounterKind.REFERENCE, True),
    "VERIFY 00 (global PIN)": (0x20, 0x00, PIN, CounterKind.REFERENCE, True),
    "CHANGE REFERENCE DATA 80 (PIN)": (0x24, 0x80, PIN + PIN, CounterKind.REFERENCE, True),
    # Probed as VERIFY 81, which PIV does not have: the card answers 6A88, the count stays unknown.
    "CHANGE REFERENCE DATA 81 (PUK)": (0x24, 0x81, PUK + PUK, CounterKind.REFERENCE, True),
    "RESET RETRY COUNTER 80 (PUK, new PIN)": (
        0x2C,
        0x80,
        PUK + PIN,
        CounterKind.RESETTING_CODE,
        False,
    ),
}
# (CLA, the probe's CLA, chained): channels 0-19, chaining, secure messaging, proprietary.
PIV_CLASSES = [
    (0x00, 0x00, False),
    (0x01, 0x01, False),
    (0x03, 0x03, False),
    (0x10, 0x00, True),
    (0x13, 0x03, True),
    (0x0C, 0x00, False),
    (0x1C, 0x00, True),
    (0x40, 0x40, False),  # channel 4
    (0x4F, 0x4F, False),  # channel 19
    (0x50, 0x40, True),
    (0x80, 0x80, False),
    (0x81, 0x81, False),
]


@pytest.mark.parametrize("odd", [False, True], ids=["even", "odd"])
@pytest.mark.parametrize("le", [None, 0x100], ids=["no-le", "le"])
@pytest.mark.parametrize("extended", [False, True], ids=["short", "extended"])
@pytest.mark.parametrize(("cla", "probe_cla", "chained"), PIV_CLASSES)
@pytest.mark.parametrize("name", list(PIV_COMMANDS))
def test_every_encoding_of_a_piv_pin_command_spends_a_try_of_its_counter(
    name: str,
    cla: int,
    probe_cla: int,
    chained: bool,
    extended: bool,
    le: int | None,
    odd: bool,
) -> None:
    ins, p2, data, kind, probed = PIV_COMMANDS[name]
    raw = CommandAPDU(cla, ins | odd, 0x00, p2, data, le, extended=extended).to_bytes()
    attempt = pin_attempt(raw)
    assert attempt is not None
    assert attempt.counter == Counter(probe_cla, kind, p2)
    assert attempt.chained is chained
    if probed:
        assert attempt.counter.probe == bytes((probe_cla, 0x20, 0x00, p2))
        assert attempt.counter.logout == bytes((probe_cla, 0x20, 0xFF, p2))
    else:  # the PUK of RESET RETRY COUNTER: no command asks for its counter
        assert attempt.counter.probe is None
        assert attempt.counter.logout is None


@pytest.mark.parametrize("name", list(PIV_COMMANDS))
def test_every_chunk_of_a_chained_piv_pin_command_spends_a_try(name: str) -> None:
    """A card that ignores chaining takes each chunk as a whole command."""
    ins, p2, data, kind, _ = PIV_COMMANDS[name]
    chunks = [data[:3], data[3:-1], data[-1:], b""]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        cla = 0x00 if last else 0x10
        attempt = pin_attempt(CommandAPDU(cla, ins, 0x00, p2, chunk).to_bytes())
        assert attempt is not None or (last and ins == 0x20 and not chunk)
        if attempt is not None:
            assert attempt.counter == Counter(0x00, kind, p2)
            assert attempt.chained is not last


def test_the_piv_pin_and_the_global_pin_are_probed_each_with_its_own_reference() -> None:
    """On a profile card both report one counter; on another card they may be two."""
    verify_80 = pin_attempt(bytes.fromhex("0020008008" + PIN.hex()))
    verify_00 = pin_attempt(bytes.fromhex("0020000008" + PIN.hex()))
    assert verify_80 is not None
    assert verify_00 is not None
    assert verify_80.counter.probe == bytes.fromhex("00200080")
    assert verify_00.counter.probe == bytes.fromhex("00200000")
    assert verify_80.counter != verify_00.counter


def test_the_puk_of_change_reference_data_and_of_reset_retry_counter_are_named_apart() -> None:
    """CHANGE REFERENCE DATA 81 names the PUK; RESET RETRY COUNTER 80 names the PIN whose
    resetting code it is. Neither can be asked for on PIV, so neither is ever forwarded."""
    change = pin_attempt(bytes.fromhex("0024008110" + (PUK + PUK).hex()))
    reset = pin_attempt(bytes.fromhex("002C008010" + (PUK + PIN).hex()))
    assert change is not None
    assert reset is not None
    assert change.counter == Counter(0x00, CounterKind.REFERENCE, 0x81)
    assert reset.counter == Counter(0x00, CounterKind.RESETTING_CODE, 0x80)


@pytest.mark.parametrize(
    "apdu",
    [
        "00200080",  # VERIFY 80 without data: the PIN's counter
        "00200080" + "00",
        "0020008000" + "0000",  # extended Le
        "01200080",  # on channel 1
        "0020FF80",  # resets the PIV PIN's security status
        "00200081",  # VERIFY of the PUK: PIV has none, and it compares nothing
        "002C038000",
    ],
)
def test_piv_commands_that_compare_nothing_spend_nothing(apdu: str) -> None:
    assert pin_attempt(bytes.fromhex(apdu)) is None
