"""A small fake :class:`~ccid.usb.UsbDevice` for the USB/IP tests: no CCID behind it.

It has a CCID reader's shape (08E6:4433, one interface of class 0x0B, interrupt IN 0x81, bulk
IN 0x82, bulk OUT 0x03) and simple behaviour a test can steer: bulk OUT data is echoed to bulk
IN, :meth:`FakeDevice.push` queues IN data on any endpoint, and :attr:`FakeDevice.out_gate`
holds OUT transfers until the test opens it.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict

from ccid.usb import DeviceSummary, InterfaceSummary, SetupPacket, Speed, Stall
from ccid.usbip import ExportedDevice

VID, PID = 0x08E6, 0x4433
INTERRUPT_IN, BULK_IN, BULK_OUT = 0x81, 0x82, 0x03

DEVICE_DESCRIPTOR = struct.pack(
    "<BBHBBBBHHHBBBB", 18, 1, 0x0110, 0, 0, 0, 64, VID, PID, 0x0100, 1, 2, 3, 1
)
CONFIGURATION_DESCRIPTOR = (
    struct.pack("<BBHBBBBB", 9, 2, 39, 1, 1, 0, 0x80, 50)
    + struct.pack("<BBBBBBBBB", 9, 4, 0, 0, 3, 0x0B, 0, 0, 0)
    + struct.pack("<BBBBHB", 7, 5, INTERRUPT_IN, 3, 8, 0xFF)
    + struct.pack("<BBBBHB", 7, 5, BULK_IN, 2, 64, 0)
    + struct.pack("<BBBBHB", 7, 5, BULK_OUT, 2, 64, 0)
)
GET_STATUS, SET_CONFIGURATION, GET_CONFIGURATION, GET_DESCRIPTOR = 0, 9, 8, 6


class FakeDevice:
    """Implements :class:`ccid.usb.UsbDevice` with test hooks."""

    def __init__(self, *, id_product: int = PID, speed: Speed = Speed.FULL) -> None:
        self.summary = DeviceSummary(
            idVendor=VID,
            idProduct=id_product,
            bcdDevice=0x0100,
            bDeviceClass=0,
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bConfigurationValue=1,
            bNumConfigurations=1,
            speed=speed,
            interfaces=(InterfaceSummary(0x0B, 0, 0),),
        )
        self.configuration = 0
        self.resets = 0
        self.received: list[tuple[int, bytes]] = []
        self.controls: list[SetupPacket] = []
        self.out_gate = asyncio.Event()
        self.out_gate.set()
        self._in: defaultdict[int, bytearray] = defaultdict(bytearray)
        self._changed = asyncio.Event()

    def push(self, endpoint: int, data: bytes) -> None:
        """Queue IN data on ``endpoint``; a parked IN transfer takes it."""
        self._in[endpoint] += data
        self._changed.set()
        self._changed = asyncio.Event()

    def queued(self, endpoint: int) -> bytes:
        """IN data not yet taken by a transfer."""
        return bytes(self._in[endpoint])

    async def control(self, setup: SetupPacket, data: bytes) -> bytes:
        self.controls.append(setup)
        kind = setup.wValue >> 8
        if setup.bmRequestType == 0x80 and setup.bRequest == GET_DESCRIPTOR:
            if kind == 1:
                return DEVICE_DESCRIPTOR[: setup.wLength]
            if kind == 2:
                return CONFIGURATION_DESCRIPTOR[: setup.wLength]
            raise Stall  # DEVICE_QUALIFIER and the rest: a full-speed device has none
        if setup.bmRequestType == 0x00 and setup.bRequest == SET_CONFIGURATION:
            self.configuration = setup.wValue
            return b""
        if setup.bmRequestType == 0x80 and setup.bRequest == GET_CONFIGURATION:
            return bytes([self.configuration])[: setup.wLength]
        if setup.bmRequestType == 0x80 and setup.bRequest == GET_STATUS:
            return b"\x00\x00"[: setup.wLength]
        raise Stall

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        while not self._in[endpoint]:
            await self._changed.wait()
        # Taken at the moment it is returned: a cancelled transfer loses nothing.
        buffer = self._in[endpoint]
        data = bytes(buffer[:length])
        del buffer[:length]
        return data

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        await self.out_gate.wait()
        self.received.append((endpoint, data))
        if endpoint == BULK_OUT:
            self.push(BULK_IN, data)
        return len(data)

    def reset(self) -> None:
        self.resets += 1
        self.configuration = 0
        self._in.clear()


#: A :class:`FakeDevice` as a server exports it, on bus id 1-1.
EXPORTED = ExportedDevice.from_summary(
    FakeDevice().summary, busid="1-1", busnum=1, devnum=2, path="/vscard/usb1/1-1"
)
