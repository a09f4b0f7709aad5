"""The reader's USB descriptors, byte for byte, and the fields libccid reads from them
(libccid's ``src/ccid_usb.c``, ``get_ccid_usb_interface`` and
``ccid_open_hack_pre``)."""

from __future__ import annotations

import struct

import pytest

from ccid import ReaderConfiguration
from ccid.descriptors import (
    CCIDClassDescriptor,
    ReaderDescriptors,
    string_descriptor,
)
from ccid.usb import InterfaceSummary, Speed

CONFIG = ReaderConfiguration(serial="0123456789AB")
DESCRIPTORS = ReaderDescriptors.from_configuration(CONFIG)

DEVICE = bytes.fromhex("12 01 1001 00 00 00 40 E608 3344 0001 01 02 03 01")
CONFIGURATION = bytes.fromhex("09 02 5D00 01 01 00 80 32")
INTERFACE = bytes.fromhex("09 04 00 00 03 0B 00 00 04")
CCID = bytes.fromhex(
    "36 21 1001 00 07 03000000 A00F0000 A00F0000 00 002A0000 16400500 00 FE000000"
    " 00000000 00000000 FE040400 12000100 FF FF 0000 00 01"
)
# In QEMU's order: interrupt IN, bulk IN, bulk OUT.
ENDPOINTS = bytes.fromhex("07 05 81 03 0800 FF  07 05 82 02 4000 00  07 05 03 02 4000 00")

# QEMU 7.2's usb-ccid class descriptor (QEMU's ``hw/usb/dev-smartcard-reader.c``,
# ``qemu_ccid_descriptor``), to check the layout against a descriptor libccid is known to read.
QEMU_CCID = bytes.fromhex(
    "36 21 10 01 00 07 01 00 00 00 a0 0f 00 00 00 00 01 00 00 80 25 00 00 00 c2 01 00 00 fe 00"
    " 00 00 00 00 00 00 00 00 00 00 fe 04 01 00 12 00 01 00 ff ff 00 00 01 01"
)


def test_device_descriptor_is_08e6_4433_full_speed_with_three_strings() -> None:
    assert DESCRIPTORS.device_bytes() == DEVICE


def test_configuration_is_config_interface_ccid_then_three_endpoints() -> None:
    assert DESCRIPTORS.configuration_bytes() == CONFIGURATION + INTERFACE + CCID + ENDPOINTS
    assert len(DESCRIPTORS.configuration_bytes()) == 93 == DESCRIPTORS.configuration.wTotalLength


def test_ccid_class_descriptor_follows_the_interface_directly_and_is_54_bytes() -> None:
    # libusb hands libccid the bytes between the interface and the first endpoint as
    # "extra", and libccid insists on exactly 54 of them.
    config = DESCRIPTORS.configuration_bytes()
    assert config[18:20] == b"\x36\x21"
    assert len(CCID) == 54
    assert config[18 + 54 + 1] == 0x05  # the first endpoint descriptor comes next


def test_class_descriptor_layout_matches_qemu_usb_ccid() -> None:
    qemu = CCIDClassDescriptor(
        dwMaxCCIDMessageLength=65554,
        dwProtocols=0x01,
        dwMaximumClock=0x10000,
        dwDataRate=9600,
        dwMaxDataRate=115200,
        dwFeatures=0x000104FE,
        bPINSupport=0x01,
    )
    assert qemu.to_bytes() == QEMU_CCID


def test_fields_libccid_reads_at_their_offsets() -> None:
    def u32(offset: int) -> int:
        value: int = struct.unpack_from("<I", CCID, offset)[0]
        return value

    assert CCID[4] == 0  # bMaxSlotIndex: one slot
    assert CCID[5] == 0x07  # bVoltageSupport
    assert u32(6) == 0x03  # dwProtocols: T=0 and T=1
    assert u32(10) == 4000  # dwDefaultClock
    assert CCID[27] == 0  # bNumDataRatesSupported: no GET_DATA_RATES at open
    assert u32(40) & 0x70000 == 0x40000  # extended APDU exchange level
    assert u32(40) & 0x40  # libccid sends neither PPS nor SetParameters
    assert u32(44) == 65554  # dwMaxCCIDMessageLength
    assert struct.unpack_from("<H", CCID, 50)[0] == 0  # wLcdLayout
    assert CCID[52] == 0  # bPINSupport: no PC_to_RDR_Secure from OpenSC
    assert CCID[53] == 1  # bMaxCCIDBusySlots


def test_max_message_length_comes_from_the_configuration() -> None:
    small = ReaderDescriptors.from_configuration(ReaderConfiguration(max_message_length=271))
    assert small.ccid.to_bytes()[44:48] == (271).to_bytes(4, "little")


def test_string_zero_lists_us_english() -> None:
    assert DESCRIPTORS.string_bytes(0) == bytes.fromhex("04 03 0904")


@pytest.mark.parametrize(
    ("index", "text"),
    [(1, "vscard"), (2, "vscard virtual CCID reader"), (3, "0123456789AB"), (4, "vscard CCID")],
)
def test_strings_are_utf16le_with_their_length(index: int, text: str) -> None:
    encoded = text.encode("utf-16-le")
    assert DESCRIPTORS.string_bytes(index) == bytes([2 + len(encoded), 3]) + encoded


def test_unknown_string_index_has_no_descriptor() -> None:
    assert DESCRIPTORS.string_bytes(5) is None
    assert DESCRIPTORS.string_bytes(0xEE) is None


def test_each_device_gets_its_own_serial_by_default() -> None:
    first, second = ReaderConfiguration(), ReaderConfiguration()
    assert first.serial != second.serial
    assert len(first.serial) == 12


def test_string_too_long_for_a_descriptor_is_refused() -> None:
    with pytest.raises(ValueError, match="serial"):
        ReaderConfiguration(serial="x" * 127)
    with pytest.raises(ValueError, match="does not fit"):
        string_descriptor("x" * 127)
    assert len(string_descriptor("x" * 126)) == 254


@pytest.mark.parametrize(
    "options",
    [
        {"max_message_length": 270},
        {"max_message_length": 65555},
        {"time_extension_interval": 0},
        {"time_extension_interval": 3.0},
        {"idVendor": 0x10000},
        {"serial": ""},
        {"firmware_id": "x" * 256},
    ],
)
def test_configuration_refuses_values_that_would_break_the_host(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        ReaderConfiguration(**options)  # type: ignore[arg-type]


def test_summary_is_what_usbip_devlist_reports() -> None:
    summary = DESCRIPTORS.summary
    assert (summary.idVendor, summary.idProduct, summary.bcdDevice) == (0x08E6, 0x4433, 0x0100)
    assert (summary.bDeviceClass, summary.bDeviceSubClass, summary.bDeviceProtocol) == (0, 0, 0)
    assert (summary.bConfigurationValue, summary.bNumConfigurations) == (1, 1)
    assert summary.speed is Speed.FULL
    assert summary.interfaces == (InterfaceSummary(0x0B, 0, 0),)


def test_clock_frequencies_and_data_rates_for_the_class_requests() -> None:
    assert DESCRIPTORS.ccid.clock_frequencies == (4000,)
    assert DESCRIPTORS.ccid.data_rates == (10752, 344086)
