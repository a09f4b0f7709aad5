"""The contract between a USB device model and the transport that exports it (USB/IP).

A device model (the CCID reader in :mod:`ccid.device`) implements :class:`UsbDevice`; the USB/IP
server in :mod:`ccid.usbip` exports any :class:`UsbDevice` without knowing what it is.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar, Final

from cardfloor.frozen import copy_by_constructor

# The protocols are defined in a module that stays Python on the compiled build (mypyc cannot
# make a protocol class it compiles runtime-checkable); they are this module's API as before.
from .usb_protocols import ParkingDevice as ParkingDevice
from .usb_protocols import UsbDevice as UsbDevice

_SETUP: Final = struct.Struct("<BBHHH")


class Speed(enum.IntEnum):
    """``enum usb_device_speed`` values, as USB/IP carries them."""

    UNKNOWN = 0
    LOW = 1
    FULL = 2
    HIGH = 3
    WIRELESS = 4
    SUPER = 5


class Stall(Exception):
    """The endpoint stalls this request (the transport reports ``-EPIPE``)."""


class _SetupSize:
    # SetupPacket.SIZE, out of the dataclass: mypyc (2.4) hands the dataclass decorator a
    # ClassVar[int] annotated as plain `int`, which makes it a field with a default (every
    # instance then fails, "attribute 'SIZE' is read-only", or the class does, "non-default
    # argument follows default argument"). A base class's attribute is no field.
    __slots__ = ()

    SIZE: ClassVar[int] = 8


@dataclass(frozen=True, slots=True)
class SetupPacket(_SetupSize):
    """The 8-byte SETUP of a control transfer (little-endian on the wire)."""

    bmRequestType: int
    bRequest: int
    wValue: int
    wIndex: int
    wLength: int

    @classmethod
    def from_bytes(cls, data: bytes) -> SetupPacket:
        if len(data) != cls.SIZE:
            raise ValueError(f"SETUP must be 8 bytes, got {len(data)}")
        return cls(*_SETUP.unpack(data))

    def to_bytes(self) -> bytes:
        return _SETUP.pack(
            self.bmRequestType, self.bRequest, self.wValue, self.wIndex, self.wLength
        )

    @property
    def is_in(self) -> bool:
        """Data flows device to host."""
        return bool(self.bmRequestType & 0x80)


@dataclass(frozen=True, slots=True)
class InterfaceSummary:
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """What OP_REP_DEVLIST and OP_REP_IMPORT say about a device (from its descriptors)."""

    idVendor: int
    idProduct: int
    bcdDevice: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bConfigurationValue: int
    bNumConfigurations: int
    speed: Speed
    interfaces: tuple[InterfaceSummary, ...]


# Both builds copy and pickle these values alike (see copy_by_constructor).
copy_by_constructor(SetupPacket, InterfaceSummary, DeviceSummary)
