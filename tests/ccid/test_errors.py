"""One error tree, shaped like vscard's and USB/IP's: ``except ccid.CCIDError`` catches all,
each error says whose fault it is (the host's bytes or the caller's call), and each names the
field and the value."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import ccid
from ccid import (
    CCIDError,
    CCIDLocalProtocolError,
    CCIDProtocolError,
    CCIDReader,
    CCIDRemoteProtocolError,
    ReaderConfiguration,
)
from ccid.card import TEST_ATR
from ccid.codec import CommandDecoder, decode_command, decode_interrupt, decode_response, encode
from ccid.control import ControlPipe
from ccid.descriptors import ReaderDescriptors
from ccid.events import APDURequested, CCIDReaderEvent
from ccid.messages import PC_to_RDR_GetSlotStatus, PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock
from ccid.slot import SlotState
from ccid.usb import SetupPacket, Stall

OVERSIZED_HEADER = bytes.fromhex("6F FFFFFFFF 00 01 000000")


def test_both_sides_are_protocol_errors_under_the_one_root() -> None:
    assert issubclass(CCIDProtocolError, CCIDError)
    assert issubclass(CCIDRemoteProtocolError, CCIDProtocolError)
    assert issubclass(CCIDLocalProtocolError, CCIDProtocolError)
    assert not issubclass(CCIDLocalProtocolError, CCIDRemoteProtocolError)
    assert not issubclass(CCIDRemoteProtocolError, CCIDLocalProtocolError)
    # Callers that caught the ValueError a bad ATR used to raise still catch it.
    assert issubclass(CCIDLocalProtocolError, ValueError)
    assert not issubclass(CCIDRemoteProtocolError, ValueError)


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="CCIDRemoteProtocolError or CCIDLocalProtocolError"):
        CCIDProtocolError("x", field="f", value=1)


def test_every_error_name_is_exported() -> None:
    names = {"CCIDError", "CCIDProtocolError", "CCIDRemoteProtocolError", "CCIDLocalProtocolError"}
    assert names <= set(ccid.__all__)


def test_an_oversized_header_is_the_hosts_fault_and_names_dwlength() -> None:
    reader = CCIDReader()
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        reader.receive_bulk_out(OVERSIZED_HEADER, 0.0)
    assert (caught.value.field, caught.value.value) == ("dwLength", 0xFFFFFFFF)
    assert str(caught.value) == (
        "message exceeds dwMaxCCIDMessageLength=65554: dwLength=0xFFFFFFFF"
    )


def test_an_error_held_beside_events_is_the_hosts_fault() -> None:
    reader = CCIDReader()
    reader.insert_card(TEST_ATR)
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 0)), 0.0)
    xfr = encode(PC_to_RDR_XfrBlock(0, 1, b"\x00\xa4\x04\x00"))
    events = reader.receive_bulk_out(xfr + OVERSIZED_HEADER, 0.0)
    assert [type(event) for event in events] == [APDURequested]
    assert isinstance(reader.error, CCIDRemoteProtocolError)
    assert reader.error.field == "dwLength"


@pytest.mark.parametrize(
    ("decode", "wire", "field"),
    [
        (decode_command, "62 00000000 00", "length"),
        (decode_command, "62 01000000 00 00 000000", "dwLength"),
        (decode_response, "81 00000000 00 00 04 00 00", "bStatus"),
        (decode_response, "6F 00000000 00 00 00 00 00", "bMessageType"),
        (decode_interrupt, "52 00", "bMessageType"),
    ],
)
def test_malformed_bytes_from_the_peer_raise_a_remote_error(
    decode: Callable[[bytes], object], wire: str, field: str
) -> None:
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        decode(bytes.fromhex(wire))
    assert caught.value.field == field
    assert f"{field}=" in str(caught.value)


def test_the_command_decoder_refuses_an_oversized_header_as_the_hosts_fault() -> None:
    decoder = CommandDecoder()
    decoder.feed(OVERSIZED_HEADER)
    with pytest.raises(CCIDRemoteProtocolError, match="dwLength=0xFFFFFFFF"):
        decoder.next_command()


def test_an_abort_for_a_missing_slot_is_the_hosts_fault_and_ep0_stalls_it() -> None:
    reader = CCIDReader()
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        reader.abort_request(2, 7)
    assert (caught.value.field, caught.value.value) == ("bSlot", 2)
    assert str(caught.value) == "no such slot: bSlot=0x02"
    pipe = ControlPipe(ReaderDescriptors.from_configuration(ReaderConfiguration()), reader)
    with pytest.raises(Stall):
        pipe.handle(SetupPacket(0x21, 0x01, 7 << 8 | 2, 0, 0), b"")


@pytest.mark.parametrize(
    ("atr", "field", "value"),
    [
        (b"\x3b" + bytes(33), "ATR.length", 34),
        (b"\x00\x00", "ATR.TS", 0),
        (b"\x3b", "ATR.length", 1),
        (bytes.fromhex("3B 10"), "ATR.offset", 2),  # TA1 announced, missing
    ],
)
def test_an_atr_the_reader_cannot_hold_is_the_callers_fault_and_changes_nothing(
    atr: bytes, field: str, value: int
) -> None:
    reader = CCIDReader()
    reader.insert_card(TEST_ATR)
    reader.read_interrupt_in()
    with pytest.raises(CCIDLocalProtocolError) as caught:
        reader.insert_card(atr)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert f"{field}=0x{value:02X}" in str(caught.value)
    # The card present stays, and the host hears of no change.
    assert reader.atr == TEST_ATR
    assert reader.slot_state is SlotState.PRESENT_INACTIVE
    assert reader.read_interrupt_in() is None


def test_except_value_error_still_catches_a_refused_card() -> None:
    reader = CCIDReader()
    with pytest.raises(ValueError, match="exceeds 33"):
        reader.insert_card(b"\x3b" + bytes(33))


def test_a_late_or_unknown_answer_is_no_error() -> None:
    # The card side may answer after the APDU was cancelled: the reader drops it quietly.
    reader = CCIDReader()
    assert reader.apdu_response(99, b"\x90\x00") == []
    assert reader.apdu_failed(99) == []
    assert reader.read_bulk_in(1 << 16) == b""


def test_well_framed_commands_with_wrong_fields_are_answered_not_raised() -> None:
    reader = CCIDReader()
    assert reader.receive_bulk_out(encode(PC_to_RDR_GetSlotStatus(5, 1)), 0.0) == []
    assert reader.read_bulk_in(1 << 16)  # answered with bError BAD_SLOT


def test_the_event_union_has_the_ccid_prefix_and_the_old_name_warns() -> None:
    import ccid.events

    with pytest.warns(DeprecationWarning, match="ccid.events.CCIDReaderEvent"):
        old = ccid.events.ReaderEvent
    assert old is CCIDReaderEvent
