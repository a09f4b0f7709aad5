"""PINs never reach logs: VERIFY-family and ENVELOPE command data is masked in APDU traces."""

import pytest

from cardfloor.iso7816.trace import apdu_trace, command_trace, response_trace


@pytest.mark.parametrize("ins", [0x20, 0x21, 0x24, 0x25, 0x2C, 0x2D])
def test_pin_bearing_commands_show_their_header_only(ins: int) -> None:
    apdu = bytes([0x00, ins, 0x00, 0x80, 0x08]) + b"12345678"
    trace = apdu_trace(apdu)
    assert trace == f"00{ins:02x}008008<8 bytes masked>"
    assert b"12345678".hex() not in trace


def test_other_commands_are_shown_whole() -> None:
    assert apdu_trace(bytes.fromhex("00A4040007A0000000790100")) == "00a4040007a0000000790100"
    assert apdu_trace(bytes.fromhex("0020008000")) == "0020008000"  # a status query: no PIN


def test_lazy_traces_render_only_when_written_and_mask_commands() -> None:
    verify = bytes.fromhex("0020008008") + b"12345678"
    assert repr(command_trace(verify)) == "0020008008<8 bytes masked>"
    assert str(response_trace(b"\x90\x00")) == "9000"


def test_envelope_data_is_masked_whole_or_in_parts() -> None:
    """ENVELOPE (ISO/IEC 7816-4 §11.7.2) may carry a VERIFY, or a part of one."""
    verify = bytes.fromhex("0020008008") + b"12345678"
    whole = bytes.fromhex("00C200000D") + verify
    assert apdu_trace(whole) == "00c200000d<13 bytes masked>"
    part = bytes.fromhex("00C2000006") + b"345678"
    assert apdu_trace(part) == "00c2000006<6 bytes masked>"
    assert repr(command_trace(bytes.fromhex("00C30000") + b"\x0f\x53\x0d" + verify)) == (
        "00c300000f<15 bytes masked>"
    )
    assert apdu_trace(bytes.fromhex("00C20000")) == "00c20000"  # ends a sequence: no data
