"""What a virtual reader looks like and how it paces itself: one frozen dataclass."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Final

from .constants import DEFAULT_MAX_MESSAGE_LENGTH, MIN_MAX_MESSAGE_LENGTH

#: libccid's default read timeout (DEFAULT_COM_READ_TIMEOUT) in seconds. With automatic PPS it
#: never derives a longer one from the ATR, so a time extension must come sooner than this.
LIBCCID_READ_TIMEOUT: Final = 3.0

#: USB string descriptors hold at most (255 - 2) // 2 UTF-16 code units.
_MAX_STRING_UNITS: Final = 126


def new_serial() -> str:
    """A fresh serial number: pcscd names readers by it, so each device needs its own."""
    return secrets.token_hex(6).upper()


def _check_string(name: str, value: str) -> None:
    units = len(value.encode("utf-16-le")) // 2
    if units > _MAX_STRING_UNITS:
        raise ValueError(f"{name} is {units} UTF-16 units; a USB string holds {_MAX_STRING_UNITS}")


@dataclass(frozen=True, slots=True)
class ReaderConfiguration:
    """Identity and limits of one virtual CCID reader.

    The default VID:PID 08E6:4433 (Gemalto GemPC433-Swap, as QEMU's usb-ccid) is in libccid's
    supported list, which is the only way pcscd picks a driver; it makes libccid send Gemalto
    Escapes, which the reader answers. pcscd names the reader after libccid's entry for the
    VID:PID, then ``[interface]`` and ``(serial)``.
    """

    idVendor: int = 0x08E6
    idProduct: int = 0x4433
    bcdDevice: int = 0x0100
    manufacturer: str = "vscard"
    product: str = "vscard virtual CCID reader"
    serial: str = field(default_factory=new_serial)
    interface: str = "vscard CCID"
    #: dwMaxCCIDMessageLength. Smaller values make APDUs longer than it - 10 chain.
    max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH
    #: Seconds between time-extension replies while the card works on an XfrBlock.
    time_extension_interval: float = 1.0
    #: Answer to Gemalto's "get firmware version" Escape (libccid's sFirmwareID property).
    firmware_id: str = "vscard CCID 1.0"

    def __post_init__(self) -> None:
        for name in ("idVendor", "idProduct", "bcdDevice"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFFFF:
                raise ValueError(f"{name} must fit in a u16, got {value}")
        for name in ("manufacturer", "product", "serial", "interface"):
            _check_string(name, getattr(self, name))
        if not self.serial:
            raise ValueError("serial must not be empty: pcscd tells readers apart by it")
        if not MIN_MAX_MESSAGE_LENGTH <= self.max_message_length <= DEFAULT_MAX_MESSAGE_LENGTH:
            raise ValueError(
                f"max_message_length={self.max_message_length} is outside "
                f"{MIN_MAX_MESSAGE_LENGTH}..{DEFAULT_MAX_MESSAGE_LENGTH}"
            )
        if not 0 < self.time_extension_interval < LIBCCID_READ_TIMEOUT:
            raise ValueError(
                f"time_extension_interval={self.time_extension_interval} must be above 0 and "
                f"below libccid's {LIBCCID_READ_TIMEOUT} s read timeout"
            )
        if len(self.firmware_id.encode()) > 255:
            raise ValueError("firmware_id exceeds 255 bytes")
