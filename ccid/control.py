"""ep0, sans-IO: the standard USB requests and the CCID class requests of the reader.

What the Linux kernel (``drivers/usb/core/hub.c`` at enumeration), libusb/libccid and
usbip-win2 send: GET_DESCRIPTOR at every wLength (answered with min(wLength, length) bytes),
SET_CONFIGURATION (which resets the CCID state, so no stale answer survives a re-attach),
SET_INTERFACE, GET_STATUS, CLEAR_FEATURE(ENDPOINT_HALT), usbip-win2's hub-class port reset.
DEVICE_QUALIFIER stalls: the device is full speed only. Anything unknown stalls.

Three requests reach the reader (SET_CONFIGURATION and a port reset reset it, ABORT starts an
abort), so a request returns, beside its answer, the events it caused for the card side.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from cardfloor.log import get_logger

from .constants import ClassRequest
from .descriptors import (
    BULK_IN,
    BULK_OUT,
    INTERRUPT_IN,
    DescriptorType,
    ReaderDescriptors,
)
from .errors import CCIDRemoteProtocolError
from .events import CCIDReaderEvent
from .reader import CCIDReader
from .usb import SetupPacket, Stall

log = get_logger("ccid.control")


class StandardRequest(enum.IntEnum):
    """bRequest of the standard requests (USB 2.0 table 9-4)."""

    GET_STATUS = 0
    CLEAR_FEATURE = 1
    SET_FEATURE = 3
    SET_ADDRESS = 5
    GET_DESCRIPTOR = 6
    SET_DESCRIPTOR = 7
    GET_CONFIGURATION = 8
    SET_CONFIGURATION = 9
    GET_INTERFACE = 10
    SET_INTERFACE = 11
    SYNCH_FRAME = 12


#: Feature selector of CLEAR_FEATURE on an endpoint.
ENDPOINT_HALT: Final = 0
#: Hub-class port feature that usbip-win2 sends (bmRequestType 0x23) to reset the device.
PORT_RESET: Final = 4


class RequestType(enum.IntEnum):
    """The bmRequestType values ep0 answers: direction | type | recipient."""

    STANDARD_DEVICE_OUT = 0x00
    STANDARD_DEVICE_IN = 0x80
    STANDARD_INTERFACE_OUT = 0x01
    STANDARD_INTERFACE_IN = 0x81
    STANDARD_ENDPOINT_OUT = 0x02
    STANDARD_ENDPOINT_IN = 0x82
    CLASS_INTERFACE_OUT = 0x21
    CLASS_INTERFACE_IN = 0xA1
    CLASS_OTHER_OUT = 0x23


_ENDPOINTS: Final = frozenset({0x00, 0x80, BULK_OUT, BULK_IN, INTERRUPT_IN})
_NOT_HALTED: Final = b"\x00\x00"
_CONFIGURATION_VALUE: Final = 1
_INTERFACE_NUMBER: Final = 0


class ControlPipe:
    """Answers ep0 requests for one reader; raises :class:`~ccid.usb.Stall` to refuse one."""

    def __init__(self, descriptors: ReaderDescriptors, reader: CCIDReader) -> None:
        self._descriptors = descriptors
        self._reader = reader
        self.configuration = 0
        """The bConfigurationValue set by the host (0: not configured)."""

    def reset(self) -> list[CCIDReaderEvent]:
        """A USB reset: back to the default state, unconfigured; returns the reader's events."""
        self.configuration = 0
        return self._reader.reset()

    def handle(self, setup: SetupPacket, data: bytes) -> tuple[bytes, list[CCIDReaderEvent]]:
        """Answer one control transfer: at most wLength bytes for IN, b"" for OUT, with the
        events the request caused in the reader."""
        log.debug(
            "ccid.control",
            bmRequestType=setup.bmRequestType,
            bRequest=setup.bRequest,
            wValue=setup.wValue,
            wIndex=setup.wIndex,
            wLength=setup.wLength,
        )
        events: list[CCIDReaderEvent] = []
        answer = self._answer(setup, events)
        if answer is None:
            log.debug(
                "ccid.control_stall", bmRequestType=setup.bmRequestType, bRequest=setup.bRequest
            )
            raise Stall(
                f"bmRequestType=0x{setup.bmRequestType:02X} bRequest=0x{setup.bRequest:02X} "
                f"wValue=0x{setup.wValue:04X} wIndex=0x{setup.wIndex:04X}"
            )
        return (answer[: setup.wLength] if setup.is_in else b""), events

    def _answer(self, setup: SetupPacket, events: list[CCIDReaderEvent]) -> bytes | None:
        request, value, index = setup.bRequest, setup.wValue, setup.wIndex
        match setup.bmRequestType:
            case RequestType.STANDARD_DEVICE_IN if request == StandardRequest.GET_DESCRIPTOR:
                return self._descriptor(value >> 8, value & 0xFF)
            case RequestType.STANDARD_DEVICE_IN if request == StandardRequest.GET_STATUS:
                return b"\x00\x00"  # bus powered, no remote wakeup
            case RequestType.STANDARD_DEVICE_IN if request == StandardRequest.GET_CONFIGURATION:
                return bytes([self.configuration])
            case RequestType.STANDARD_DEVICE_OUT if request == StandardRequest.SET_CONFIGURATION:
                if value not in (0, _CONFIGURATION_VALUE):
                    return None
                log.info("ccid.set_configuration", configuration=value)
                self.configuration = value
                events += self._reader.reset()
                return b""
            case RequestType.STANDARD_DEVICE_OUT if request == StandardRequest.SET_ADDRESS:
                return b""  # vhci answers it itself; accept a transport that forwards it
            case RequestType.STANDARD_INTERFACE_IN if (
                request == StandardRequest.GET_STATUS and index == _INTERFACE_NUMBER
            ):
                return b"\x00\x00"
            case RequestType.STANDARD_INTERFACE_IN if (
                request == StandardRequest.GET_INTERFACE and index == _INTERFACE_NUMBER
            ):
                return b"\x00"
            case RequestType.STANDARD_INTERFACE_OUT if request == StandardRequest.SET_INTERFACE:
                if index != _INTERFACE_NUMBER or value != 0:
                    return None
                self._reader.discard_partial_command()
                return b""
            case RequestType.STANDARD_ENDPOINT_IN if (
                request == StandardRequest.GET_STATUS and index in _ENDPOINTS
            ):
                return _NOT_HALTED  # halts are never kept: a stall refuses one transfer only
            case RequestType.STANDARD_ENDPOINT_OUT if request == StandardRequest.CLEAR_FEATURE:
                if value != ENDPOINT_HALT or index not in _ENDPOINTS:
                    return None
                if index == BULK_OUT:
                    self._reader.discard_partial_command()
                return b""
            case RequestType.CLASS_INTERFACE_OUT if (
                request == ClassRequest.ABORT and index & 0xFF == _INTERFACE_NUMBER
            ):
                try:
                    events += self._reader.abort_request(value & 0xFF, value >> 8)
                except CCIDRemoteProtocolError:
                    return None  # no such slot
                return b""
            case RequestType.CLASS_INTERFACE_IN if (
                request == ClassRequest.GET_CLOCK_FREQUENCIES and index & 0xFF == _INTERFACE_NUMBER
            ):
                return _words(self._descriptors.ccid.clock_frequencies)
            case RequestType.CLASS_INTERFACE_IN if (
                request == ClassRequest.GET_DATA_RATES and index & 0xFF == _INTERFACE_NUMBER
            ):
                return _words(self._descriptors.ccid.data_rates)
            case RequestType.CLASS_OTHER_OUT if (
                request == StandardRequest.SET_FEATURE and value == PORT_RESET
            ):
                log.info("ccid.port_reset")
                events += self.reset()
                return b""
            case _:
                return None

    def _descriptor(self, kind: int, index: int) -> bytes | None:
        descriptors = self._descriptors
        if kind == DescriptorType.DEVICE and index == 0:
            return descriptors.device_bytes()
        if kind == DescriptorType.CONFIGURATION and index == 0:
            return descriptors.configuration_bytes()
        if kind == DescriptorType.STRING:
            return descriptors.string_bytes(index)
        # DEVICE_QUALIFIER and OTHER_SPEED_CONFIGURATION: full speed only. BOS: bcdUSB 1.10.
        return None


def _words(values: tuple[int, ...]) -> bytes:
    return struct.pack(f"<{len(values)}I", *values)
