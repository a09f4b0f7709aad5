"""ep0 answers what the Linux kernel, libusb/libccid and usbip-win2 ask of a CCID reader (the
kernel's ``drivers/usb/core/message.c``, libccid's ``src/ccid_usb.c``) and stalls everything
else."""

from __future__ import annotations

import pytest

from ccid import CCIDReader, ReaderConfiguration
from ccid.card import TEST_ATR
from ccid.codec import encode
from ccid.control import ControlPipe
from ccid.descriptors import ReaderDescriptors
from ccid.events import APDUCancelled, APDURequested, ICCReset
from ccid.messages import PC_to_RDR_GetSlotStatus, PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock
from ccid.slot import SlotState
from ccid.usb import SetupPacket, Stall

CONFIG = ReaderConfiguration(serial="0123456789AB")
DESCRIPTORS = ReaderDescriptors.from_configuration(CONFIG)


def pipe() -> tuple[ControlPipe, CCIDReader]:
    reader = CCIDReader(CONFIG)
    return ControlPipe(DESCRIPTORS, reader), reader


def request(
    bmRequestType: int, bRequest: int, wValue: int = 0, wIndex: int = 0, wLength: int = 0
) -> SetupPacket:
    return SetupPacket(bmRequestType, bRequest, wValue, wIndex, wLength)


def get_descriptor(kind: int, index: int, length: int, langid: int = 0) -> SetupPacket:
    return request(0x80, 6, kind << 8 | index, langid, length)


# The order Linux uses after attach (hub.c, message.c), then libccid's own requests.
@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (get_descriptor(1, 0, 64), DESCRIPTORS.device_bytes()),
        (get_descriptor(1, 0, 18), DESCRIPTORS.device_bytes()),
        (get_descriptor(1, 0, 8), DESCRIPTORS.device_bytes()[:8]),
        (get_descriptor(2, 0, 9), DESCRIPTORS.configuration_bytes()[:9]),
        (get_descriptor(2, 0, 93), DESCRIPTORS.configuration_bytes()),
        (get_descriptor(2, 0, 0xFFFF), DESCRIPTORS.configuration_bytes()),
        (get_descriptor(3, 0, 255), bytes.fromhex("04 03 0904")),
        (get_descriptor(3, 2, 255, 0x0409), DESCRIPTORS.string_bytes(2)),
        (get_descriptor(3, 3, 2, 0x0409), DESCRIPTORS.string_bytes(3)[:2]),  # type: ignore[index]
        (get_descriptor(3, 3, 255, 0x0409), DESCRIPTORS.string_bytes(3)),
        (get_descriptor(3, 4, 255, 0x0409), DESCRIPTORS.string_bytes(4)),
    ],
)
def test_descriptors_are_answered_with_at_most_wlength_bytes(
    setup: SetupPacket, expected: bytes
) -> None:
    control, _ = pipe()
    assert control.handle(setup, b"") == (expected, [])


@pytest.mark.parametrize(
    "setup",
    [
        get_descriptor(6, 0, 10),  # DEVICE_QUALIFIER: full speed only
        get_descriptor(7, 0, 9),  # OTHER_SPEED_CONFIGURATION
        get_descriptor(0x0F, 0, 5),  # BOS: bcdUSB 1.10 has none
        get_descriptor(2, 1, 9),  # one configuration only
        get_descriptor(3, 9, 255, 0x0409),
        get_descriptor(0x21, 0, 54),
        request(0x00, 9, 2),  # SET_CONFIGURATION(2)
        request(0x01, 11, 1, 0),  # SET_INTERFACE alternate 1
        request(0x02, 1, 0, 0x05),  # CLEAR_FEATURE(HALT) on an endpoint that does not exist
        request(0x00, 3, 1),  # SET_FEATURE(DEVICE_REMOTE_WAKEUP)
        request(0x02, 3, 0, 0x82),  # SET_FEATURE(ENDPOINT_HALT)
        request(0x21, 1, 0x0501),  # ABORT for slot 1
        request(0x21, 1, 0x0500, 1),  # ABORT to interface 1
        request(0xA1, 4, 0, 0, 4),  # unknown class request
        request(0x40, 1, 0, 0, 0),  # vendor request
        request(0xC0, 0x6A, 0, 0, 16),
    ],
)
def test_unknown_or_impossible_requests_stall(setup: SetupPacket) -> None:
    control, _ = pipe()
    with pytest.raises(Stall):
        control.handle(setup, b"")


def test_set_configuration_configures_and_resets_the_ccid_state() -> None:
    control, reader = pipe()
    reader.insert_card(TEST_ATR)
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 1)), 0.0)
    assert control.handle(request(0x80, 8, 0, 0, 1), b"") == (b"\x00", [])
    assert control.handle(request(0x00, 9, 1), b"") == (b"", [ICCReset(active=False)])
    assert control.configuration == 1
    assert control.handle(request(0x80, 8, 0, 0, 1), b"") == (b"\x01", [])
    # The unread PowerOn answer is gone and the card is unpowered, as after a re-plug.
    assert reader.read_bulk_in(64) == b""
    assert reader.slot_state is SlotState.PRESENT_INACTIVE


def test_set_configuration_cancels_an_apdu_in_flight() -> None:
    control, reader = pipe()
    reader.insert_card(TEST_ATR)
    assert reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 1)), 0.0) == [
        ICCReset(active=True)
    ]
    (requested,) = reader.receive_bulk_out(
        encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\xa4\x04\x00")), 0.0
    )
    assert isinstance(requested, APDURequested)
    assert control.handle(request(0x00, 9, 1), b"") == (
        b"",
        [APDUCancelled(requested.request), ICCReset(active=False)],
    )
    assert reader.read_bulk_in(64) == b""


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (request(0x80, 0, 0, 0, 2), b"\x00\x00"),  # GET_STATUS device: bus powered
        (request(0x81, 0, 0, 0, 2), b"\x00\x00"),  # interface
        (request(0x82, 0, 0, 0x82, 2), b"\x00\x00"),  # endpoint, not halted
        (request(0x81, 10, 0, 0, 1), b"\x00"),  # GET_INTERFACE
        (request(0x01, 11, 0, 0), b""),  # SET_INTERFACE(0, 0)
        (request(0x02, 1, 0, 0x82), b""),  # CLEAR_FEATURE(ENDPOINT_HALT) bulk IN
        (request(0x02, 1, 0, 0x81), b""),  # interrupt IN
        (request(0x00, 5, 7), b""),  # SET_ADDRESS, if a transport forwards it
    ],
)
def test_standard_requests_libusb_and_the_kernel_send(setup: SetupPacket, expected: bytes) -> None:
    control, _ = pipe()
    assert control.handle(setup, b"") == (expected, [])


def test_clear_halt_on_bulk_out_forgets_a_partial_command() -> None:
    control, reader = pipe()
    reader.receive_bulk_out(encode(PC_to_RDR_GetSlotStatus(0, 1))[:6], 0.0)
    control.handle(request(0x02, 1, 0, 0x03), b"")
    reader.receive_bulk_out(encode(PC_to_RDR_GetSlotStatus(0, 2)), 0.0)
    assert reader.read_bulk_in(64) == bytes.fromhex("81 00000000 00 02 02 00 00")


def test_class_requests_list_the_clock_and_the_data_rates() -> None:
    control, _ = pipe()
    assert control.handle(request(0xA1, 2, 0, 0, 256), b"")[0] == bytes.fromhex("A00F0000")
    assert control.handle(request(0xA1, 3, 0, 0, 256), b"")[0] == bytes.fromhex("002A0000 16400500")
    assert control.handle(request(0xA1, 3, 0, 0, 4), b"")[0] == bytes.fromhex("002A0000")


def test_abort_class_request_starts_the_abort_procedure() -> None:
    control, reader = pipe()
    assert control.handle(request(0x21, 1, 0x0700), b"") == (b"", [])
    assert reader.busy


def test_usbip_win2_port_reset_resets_the_device() -> None:
    control, reader = pipe()
    reader.insert_card(TEST_ATR)
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 1)), 0.0)
    control.handle(request(0x00, 9, 1), b"")
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 2)), 0.0)
    assert control.handle(request(0x23, 3, 4, 1), b"") == (b"", [ICCReset(active=False)])
    assert control.configuration == 0
    assert reader.read_bulk_in(64) == b""
    assert reader.slot_state is SlotState.PRESENT_INACTIVE


def test_abort_class_request_cancels_the_apdu_with_the_card() -> None:
    control, reader = pipe()
    reader.insert_card(TEST_ATR)
    reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 1)), 0.0)
    (requested,) = reader.receive_bulk_out(
        encode(PC_to_RDR_XfrBlock(0, 2, b"\x00\xa4\x04\x00")), 0.0
    )
    assert isinstance(requested, APDURequested)
    assert control.handle(request(0x21, 1, 0x0300), b"") == (
        b"",
        [APDUCancelled(requested.request)],
    )
