"""The contract between a USB device model and the transport that exports it (USB/IP).

A device model (the CCID reader in :mod:`ccid.device`) implements :class:`UsbDevice`; the USB/IP
server in :mod:`ccid.usbip` exports any :class:`UsbDevice` without knowing what it is.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class SetupPacket:
    """The 8-byte SETUP of a control transfer (little-endian on the wire)."""

    bmRequestType: int
    bRequest: int
    wValue: int
    wIndex: int
    wLength: int

    SIZE: ClassVar[int] = 8

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


class UsbDevice(Protocol):
    """A USB device as a transport sees it: ep0 control requests and data endpoints.

    Endpoint numbers are USB endpoint addresses (``0x81`` interrupt IN, ``0x82`` bulk IN,
    ``0x03`` bulk OUT for the CCID reader). Coroutines may be cancelled at any await (a
    CMD_UNLINK does that): an implementation must consume data only at the moment it returns
    it, with no await in between, so a cancelled IN transfer never loses data.

    A device may also have a class attribute ``start_inline = True``: a promise that its
    coroutines do not use :func:`asyncio.current_task` (``asyncio.timeout``,
    ``asyncio.TaskGroup``) before their first wait. A transport then starts each transfer inline
    and makes a task of it only if it waits (:mod:`cardfloor.aio.eager`); without it, each
    transfer is a task from the start.
    """

    @property
    def summary(self) -> DeviceSummary: ...

    async def control(self, setup: SetupPacket, data: bytes) -> bytes:
        """Handle a control transfer on ep0.

        For an IN request, return at most ``setup.wLength`` bytes; for an OUT request ``data``
        holds the data stage and the return value is ``b""``. Raise :class:`Stall` to refuse.
        """
        ...

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        """Wait until the IN endpoint has data; return at most ``length`` bytes of it."""
        ...

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        """Deliver OUT data; return how many bytes were accepted (the URB's actual_length)."""
        ...

    def reset(self) -> None:
        """A USB port reset: back to the default state, nothing in flight."""
        ...


@runtime_checkable
class ParkingDevice(Protocol):
    """A :class:`UsbDevice` whose IN endpoints also take a callback instead of a coroutine.

    A transport serves an IN transfer with :meth:`take_in`; when it gets None, it parks the
    transfer with :meth:`park_in` and tries again when ``wake`` is called, in the call that
    made data ready (a card's answer), with no task and no loop turn in between. Data is
    consumed only by :meth:`take_in`, which the transport completes the transfer with at once,
    so a transfer unparked by CMD_UNLINK never loses data.
    """

    def take_in(self, endpoint: int, length: int) -> bytes | None:
        """What :meth:`UsbDevice.transfer_in` would return now, or None while it would wait.
        Raises :class:`Stall` as it does."""
        ...

    def park_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """Call ``wake`` once (then forget it) when ``endpoint`` may have data: it calls
        :meth:`take_in` again, and parks again if another transfer took the data."""
        ...

    def unpark_in(self, endpoint: int, wake: Callable[[], None]) -> None:
        """Forget ``wake`` (a no-op once it was called)."""
        ...
