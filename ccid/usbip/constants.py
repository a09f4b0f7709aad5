"""Wire constants of USB/IP v1.1.1 (Linux ``Documentation/usb/usbip_protocol.rst``).

Every header field is big-endian; the 8-byte SETUP and all payloads travel unchanged.
"""

from __future__ import annotations

import enum
from typing import Final

#: ``op_common.version`` of every OP message. Peers refuse any other value.
USBIP_VERSION: Final = 0x0111

#: The IANA-registered USB/IP port.
USBIP_PORT: Final = 3240

#: ``op_common``: version u16, code u16, status u32.
OP_COMMON_SIZE: Final = 8
#: ``busid`` field: NUL-padded text, at most 31 characters plus the NUL.
BUSID_SIZE: Final = 32
#: ``path`` field of ``usbip_usb_device``: NUL-padded text.
PATH_SIZE: Final = 256
#: ``struct usbip_usb_device`` (packed).
USB_DEVICE_SIZE: Final = 312
#: ``struct usbip_usb_interface``: class, subclass, protocol, padding.
USB_INTERFACE_SIZE: Final = 4
#: ``struct usbip_header``: 20-byte basic part and 28 command-specific bytes.
URB_HEADER_SIZE: Final = 48
#: ``usbip_iso_packet_descriptor``: offset, length, actual_length, status.
ISO_PACKET_DESCRIPTOR_SIZE: Final = 16
#: Highest endpoint number a header may carry.
MAX_ENDPOINT: Final = 15

#: ``number_of_packets`` of a non-isochronous URB: Linux vhci sends 0, usbip-win2 0xFFFFFFFF.
NON_ISO_PACKETS: Final = frozenset({0, -1})


class OpCode(enum.IntEnum):
    """``op_common.code``."""

    OP_REQ_DEVLIST = 0x8005
    OP_REP_DEVLIST = 0x0005
    OP_REQ_IMPORT = 0x8003
    OP_REP_IMPORT = 0x0003


class OpStatus(enum.IntEnum):
    """``op_common.status`` (``ST_*`` in the usbip tools)."""

    OK = 0
    #: "Request Failed"
    NA = 1
    #: "Device busy (exported)": already imported by someone else.
    DEV_BUSY = 2
    DEV_ERR = 3
    #: "Device not found": the real usbipd's answer to an unknown busid.
    NODEV = 4
    #: "Unexpected response"
    ERROR = 5


class Command(enum.IntEnum):
    """``usbip_header_basic.command``."""

    USBIP_CMD_SUBMIT = 1
    USBIP_CMD_UNLINK = 2
    USBIP_RET_SUBMIT = 3
    USBIP_RET_UNLINK = 4


class Direction(enum.IntEnum):
    """``usbip_header_basic.direction``."""

    OUT = 0
    IN = 1


class TransferFlags(enum.IntFlag):
    """``transfer_flags`` bits that mean something to a server (``include/uapi/linux/usbip.h``)."""

    SHORT_NOT_OK = 0x0001
    ISO_ASAP = 0x0002
    NO_TRANSFER_DMA_MAP = 0x0004
    ZERO_PACKET = 0x0040
    NO_INTERRUPT = 0x0080
    FREE_BUFFER = 0x0100
    DIR_IN = 0x0200


class URBStatus(enum.IntEnum):
    """``RET_SUBMIT.status`` / ``RET_UNLINK.status``: 0 or a negative Linux errno."""

    OK = 0
    #: Unlinked by ``usb_kill_urb``.
    ENOENT = -2
    ENOMEM = -12
    ENODEV = -19
    EINVAL = -22
    #: The endpoint stalled.
    EPIPE = -32
    ETIME = -62
    EPROTO = -71
    EOVERFLOW = -75
    #: Unlinked: what a server answers to a CMD_UNLINK that cancelled its URB.
    ECONNRESET = -104
    #: The endpoint went away (a port reset flushes it).
    ESHUTDOWN = -108
    ETIMEDOUT = -110
    #: Short transfer on a URB with ``SHORT_NOT_OK``.
    EREMOTEIO = -121


# A hub-class SET_FEATURE(PORT_RESET) on ep0: usbip-win2 sends it to reset the device, and the
# Linux stub treats it the same way (``USB_RT_PORT``, ``USB_REQ_SET_FEATURE``,
# ``USB_PORT_FEAT_RESET``).
USB_RT_PORT: Final = 0x23
USB_REQ_SET_FEATURE: Final = 0x03
USB_PORT_FEAT_RESET: Final = 4
