"""USB descriptors of the virtual reader: device, configuration, interface, CCID class,
endpoints and strings, byte for byte.

The choices that matter to pcscd, libccid and OpenSC (libccid's ``src/ccid_usb.c``, which reads
the class descriptor, and the CCID rev 1.1 specification's Table 5.1-1):

- interface class 0x0B, protocol 0 (plain CCID; 1 and 2 are ICCD on ep0), three endpoints, so
  libccid waits on the interrupt endpoint instead of polling GetSlotStatus every 400 ms;
- the 54-byte class descriptor right after the interface descriptor (libusb "extra");
- dwFeatures 0x000404FE: automatic everything, no PPS or SetParameters from libccid (0x40),
  and the extended APDU exchange level (0x40000), so neither side frames T=0/T=1 (QEMU's TPDU
  level makes the guest use GET RESPONSE and caps responses) and OpenSC's reader limits are
  64 KiB (libccid reports dwMaxAPDUDataSize 0x10000); OpenSC still sends an extended APDU only
  to a card whose driver sets ``SC_CARD_CAP_APDU_EXT``, which its PIV and CAC drivers do not
  (see :mod:`cacard.atr`);
- dwProtocols T=0 and T=1: libccid refuses a protocol the reader lacks, and pcscd chooses T=1
  when the card offers it (OpenSC sends extended APDUs only over T=1);
- dwMaxCCIDMessageLength 65,554 by default; bPINSupport 0 (no keypad, so no Secure);
- full speed, bcdUSB 1.10, 64-byte packets: bulk 8-64 bytes is what full speed allows.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from .configuration import ReaderConfiguration
from .constants import Feature
from .usb import DeviceSummary, InterfaceSummary, Speed

#: Endpoint addresses of the reader.
INTERRUPT_IN: Final = 0x81
BULK_IN: Final = 0x82
BULK_OUT: Final = 0x03

#: Full-speed packet size of ep0 and the bulk endpoints.
MAX_PACKET_SIZE: Final = 64

#: US English, the one language of the string descriptors.
LANGID_EN_US: Final = 0x0409

CCID_FEATURES: Final = (
    Feature.AUTO_CONFIGURATION_FROM_ATR
    | Feature.AUTO_ACTIVATION
    | Feature.AUTO_VOLTAGE
    | Feature.AUTO_CLOCK
    | Feature.AUTO_BAUD
    | Feature.AUTO_PPS_PROPRIETARY
    | Feature.AUTO_PPS_CURRENT
    | Feature.AUTO_IFSD
    | Feature.LEVEL_EXTENDED_APDU
)


class DescriptorType(enum.IntEnum):
    """bDescriptorType values (USB 2.0 table 9-5, CCID §5.1)."""

    DEVICE = 1
    CONFIGURATION = 2
    STRING = 3
    INTERFACE = 4
    ENDPOINT = 5
    DEVICE_QUALIFIER = 6
    OTHER_SPEED_CONFIGURATION = 7
    BOS = 0x0F
    CCID = 0x21


class StringIndex(enum.IntEnum):
    """Indices of the reader's string descriptors (0 is the LANGID list)."""

    MANUFACTURER = 1
    PRODUCT = 2
    SERIAL_NUMBER = 3
    INTERFACE = 4


@dataclass(frozen=True, slots=True)
class DeviceDescriptor:
    """The 18-byte device descriptor."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBHBBBBHHHBBBB")

    idVendor: int
    idProduct: int
    bcdDevice: int
    bcdUSB: int = 0x0110
    bDeviceClass: int = 0  # the class is given per interface
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = MAX_PACKET_SIZE
    iManufacturer: int = StringIndex.MANUFACTURER
    iProduct: int = StringIndex.PRODUCT
    iSerialNumber: int = StringIndex.SERIAL_NUMBER
    bNumConfigurations: int = 1

    def to_bytes(self) -> bytes:
        """The descriptor's wire bytes (little-endian)."""
        return self.FORMAT.pack(
            self.FORMAT.size,
            DescriptorType.DEVICE,
            self.bcdUSB,
            self.bDeviceClass,
            self.bDeviceSubClass,
            self.bDeviceProtocol,
            self.bMaxPacketSize0,
            self.idVendor,
            self.idProduct,
            self.bcdDevice,
            self.iManufacturer,
            self.iProduct,
            self.iSerialNumber,
            self.bNumConfigurations,
        )


@dataclass(frozen=True, slots=True)
class ConfigurationDescriptor:
    """The 9-byte configuration descriptor (wTotalLength covers all that follows it)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBHBBBBB")

    wTotalLength: int
    bNumInterfaces: int = 1
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = 0x80  # bus powered, no remote wakeup
    bMaxPower: int = 50  # 100 mA, in 2 mA units

    def to_bytes(self) -> bytes:
        """The descriptor's wire bytes (little-endian)."""
        return self.FORMAT.pack(
            self.FORMAT.size,
            DescriptorType.CONFIGURATION,
            self.wTotalLength,
            self.bNumInterfaces,
            self.bConfigurationValue,
            self.iConfiguration,
            self.bmAttributes,
            self.bMaxPower,
        )


@dataclass(frozen=True, slots=True)
class InterfaceDescriptor:
    """The 9-byte interface descriptor: class 0x0B (smart card), protocol 0 (CCID)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBBBBBBBB")

    bInterfaceNumber: int = 0
    bAlternateSetting: int = 0
    bNumEndpoints: int = 3
    bInterfaceClass: int = 0x0B
    bInterfaceSubClass: int = 0
    bInterfaceProtocol: int = 0
    iInterface: int = StringIndex.INTERFACE

    def to_bytes(self) -> bytes:
        """The descriptor's wire bytes (little-endian)."""
        return self.FORMAT.pack(
            self.FORMAT.size,
            DescriptorType.INTERFACE,
            self.bInterfaceNumber,
            self.bAlternateSetting,
            self.bNumEndpoints,
            self.bInterfaceClass,
            self.bInterfaceSubClass,
            self.bInterfaceProtocol,
            self.iInterface,
        )


@dataclass(frozen=True, slots=True)
class CCIDClassDescriptor:
    """The 54-byte Smart Card Device Class descriptor (CCID rev 1.1 §5.1)."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBHBBIIIBIIBIIIIIBBHBB")

    dwMaxCCIDMessageLength: int
    bcdCCID: int = 0x0110
    bMaxSlotIndex: int = 0
    bVoltageSupport: int = 0x07  # 5 V, 3 V, 1.8 V
    dwProtocols: int = 0x03  # T=0 and T=1
    dwDefaultClock: int = 4000  # kHz
    dwMaximumClock: int = 4000
    bNumClockSupported: int = 0
    dwDataRate: int = 10752  # bps: 4 MHz / 372
    dwMaxDataRate: int = 344086  # 4 MHz * 32 / 372
    bNumDataRatesSupported: int = 0
    dwMaxIFSD: int = 254
    dwSynchProtocols: int = 0
    dwMechanical: int = 0
    dwFeatures: int = CCID_FEATURES
    bClassGetResponse: int = 0xFF  # echo the APDU's class
    bClassEnvelope: int = 0xFF
    wLcdLayout: int = 0
    bPINSupport: int = 0
    bMaxCCIDBusySlots: int = 1

    def to_bytes(self) -> bytes:
        """The descriptor's wire bytes (little-endian)."""
        return self.FORMAT.pack(
            self.FORMAT.size,
            DescriptorType.CCID,
            self.bcdCCID,
            self.bMaxSlotIndex,
            self.bVoltageSupport,
            self.dwProtocols,
            self.dwDefaultClock,
            self.dwMaximumClock,
            self.bNumClockSupported,
            self.dwDataRate,
            self.dwMaxDataRate,
            self.bNumDataRatesSupported,
            self.dwMaxIFSD,
            self.dwSynchProtocols,
            self.dwMechanical,
            self.dwFeatures,
            self.dwMaxCCIDMessageLength,
            self.bClassGetResponse,
            self.bClassEnvelope,
            self.wLcdLayout,
            self.bPINSupport,
            self.bMaxCCIDBusySlots,
        )

    @property
    def clock_frequencies(self) -> tuple[int, ...]:
        """What GET_CLOCK_FREQUENCIES lists: with bNumClockSupported 0, default and maximum."""
        return tuple(dict.fromkeys((self.dwDefaultClock, self.dwMaximumClock)))

    @property
    def data_rates(self) -> tuple[int, ...]:
        """What GET_DATA_RATES lists: with bNumDataRatesSupported 0, default and maximum."""
        return tuple(dict.fromkeys((self.dwDataRate, self.dwMaxDataRate)))


@dataclass(frozen=True, slots=True)
class EndpointDescriptor:
    """A 7-byte endpoint descriptor."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<BBBBHB")

    TRANSFER_BULK: ClassVar[int] = 0x02
    TRANSFER_INTERRUPT: ClassVar[int] = 0x03

    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int = 0

    def to_bytes(self) -> bytes:
        """The descriptor's wire bytes (little-endian)."""
        return self.FORMAT.pack(
            self.FORMAT.size,
            DescriptorType.ENDPOINT,
            self.bEndpointAddress,
            self.bmAttributes,
            self.wMaxPacketSize,
            self.bInterval,
        )


def string_descriptor(text: str) -> bytes:
    """A string descriptor: bLength, type 3, the text in UTF-16LE."""
    encoded = text.encode("utf-16-le")
    if len(encoded) > 253:
        raise ValueError(f"string of {len(encoded)} UTF-16 bytes does not fit a descriptor")
    return bytes([2 + len(encoded), DescriptorType.STRING]) + encoded


@dataclass(frozen=True, slots=True)
class ReaderDescriptors:
    """Every descriptor of one reader, and the bytes GET_DESCRIPTOR returns for each."""

    device: DeviceDescriptor
    configuration: ConfigurationDescriptor
    interface: InterfaceDescriptor
    ccid: CCIDClassDescriptor
    endpoints: tuple[EndpointDescriptor, ...]
    #: Strings 1, 2, 3... (manufacturer, product, serial number, interface).
    strings: tuple[str, ...]

    @classmethod
    def from_configuration(cls, config: ReaderConfiguration) -> ReaderDescriptors:
        """The descriptors of a reader configured by ``config``."""
        # QEMU's usb-ccid order, which libccid is known to take. The interrupt endpoint comes
        # first so that Wireshark, which keys an interface's payload dissector by the type of
        # its last endpoint, reads the bulk traffic as CCID.
        endpoints = (
            # 8 bytes hold libccid's whole interrupt read; full-speed bInterval is in ms.
            EndpointDescriptor(INTERRUPT_IN, EndpointDescriptor.TRANSFER_INTERRUPT, 8, 255),
            EndpointDescriptor(BULK_IN, EndpointDescriptor.TRANSFER_BULK, MAX_PACKET_SIZE),
            EndpointDescriptor(BULK_OUT, EndpointDescriptor.TRANSFER_BULK, MAX_PACKET_SIZE),
        )
        interface = InterfaceDescriptor(bNumEndpoints=len(endpoints))
        ccid = CCIDClassDescriptor(dwMaxCCIDMessageLength=config.max_message_length)
        total = (
            ConfigurationDescriptor.FORMAT.size
            + InterfaceDescriptor.FORMAT.size
            + CCIDClassDescriptor.FORMAT.size
            + EndpointDescriptor.FORMAT.size * len(endpoints)
        )
        return cls(
            device=DeviceDescriptor(config.idVendor, config.idProduct, config.bcdDevice),
            configuration=ConfigurationDescriptor(wTotalLength=total),
            interface=interface,
            ccid=ccid,
            endpoints=endpoints,
            strings=(config.manufacturer, config.product, config.serial, config.interface),
        )

    def device_bytes(self) -> bytes:
        """The 18-byte device descriptor."""
        return self.device.to_bytes()

    def configuration_bytes(self) -> bytes:
        """The configuration descriptor with everything after it, wTotalLength bytes."""
        return b"".join(
            [
                self.configuration.to_bytes(),
                self.interface.to_bytes(),
                self.ccid.to_bytes(),
                *(endpoint.to_bytes() for endpoint in self.endpoints),
            ]
        )

    def string_bytes(self, index: int) -> bytes | None:
        """String descriptor ``index`` (0: the LANGID list), or None when there is none."""
        if index == 0:
            return bytes([4, DescriptorType.STRING]) + LANGID_EN_US.to_bytes(2, "little")
        if not 0 < index <= len(self.strings):
            return None
        return string_descriptor(self.strings[index - 1])

    @property
    def summary(self) -> DeviceSummary:
        """What USB/IP's OP_REP_DEVLIST and OP_REP_IMPORT report about the device."""
        return DeviceSummary(
            idVendor=self.device.idVendor,
            idProduct=self.device.idProduct,
            bcdDevice=self.device.bcdDevice,
            bDeviceClass=self.device.bDeviceClass,
            bDeviceSubClass=self.device.bDeviceSubClass,
            bDeviceProtocol=self.device.bDeviceProtocol,
            bConfigurationValue=self.configuration.bConfigurationValue,
            bNumConfigurations=self.device.bNumConfigurations,
            speed=Speed.FULL,
            interfaces=(
                InterfaceSummary(
                    self.interface.bInterfaceClass,
                    self.interface.bInterfaceSubClass,
                    self.interface.bInterfaceProtocol,
                ),
            ),
        )
