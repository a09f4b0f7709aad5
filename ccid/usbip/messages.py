"""The USB/IP messages as immutable values, one class per message.

OP messages (``OP_REQ_DEVLIST``...) open a connection; URB messages (``USBIP_CMD_SUBMIT``...)
follow a successful import. Values are checked when a message is built, so a message that
exists can always be encoded; field names are the kernel's. A field that holds an enum member
when the value is one is typed ``Enum | int``, not ``int``: the compiled build (docs/compiled.md)
stores an ``int`` field as a machine integer, which would drop the member.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from cardfloor.frozen import copy_by_constructor

from ..usb import DeviceSummary, InterfaceSummary, SetupPacket, Speed
from .constants import BUSID_SIZE, MAX_ENDPOINT, PATH_SIZE, Command, Direction, OpCode, OpStatus

_U8 = 0xFF
_U16 = 0xFFFF
_U32 = 0xFFFFFFFF
_S32_MIN = -0x80000000
_S32_MAX = 0x7FFFFFFF


def _check(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _check_s32(name: str, value: int) -> None:
    _check(name, value, _S32_MIN, _S32_MAX)


def check_busid(busid: str) -> None:
    """Raise :class:`ValueError` unless ``busid`` fits the 32-byte field (ASCII, 1-31 chars)."""
    if not busid or not busid.isascii() or "\0" in busid or len(busid) > BUSID_SIZE - 1:
        raise ValueError(f"busid must be 1-{BUSID_SIZE - 1} ASCII characters, got {busid!r}")


@dataclass(frozen=True, slots=True)
class ExportedDevice:
    """``struct usbip_usb_device``: a device as OP_REP_DEVLIST and OP_REP_IMPORT describe it.

    ``interfaces`` holds the ``usbip_usb_interface`` records that follow the device in
    OP_REP_DEVLIST (exactly ``bNumInterfaces`` of them); OP_REP_IMPORT carries none, so a
    device read from it has ``interfaces == ()``. ``speed`` is a :class:`~ccid.usb.Speed`
    when the value is one (a newer peer may send 6, SUPER_PLUS).
    """

    path: str
    busid: str
    busnum: int
    devnum: int
    speed: Speed | int
    idVendor: int
    idProduct: int
    bcdDevice: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bConfigurationValue: int
    bNumConfigurations: int
    bNumInterfaces: int
    interfaces: tuple[InterfaceSummary, ...] = ()

    def __post_init__(self) -> None:
        # surrogateescape: a path read from a peer keeps its bytes even when they are not UTF-8.
        if "\0" in self.path or len(self.path.encode("utf-8", "surrogateescape")) >= PATH_SIZE:
            raise ValueError(f"path must be at most {PATH_SIZE - 1} bytes of UTF-8 without NUL")
        check_busid(self.busid)
        for name in ("busnum", "devnum", "speed"):
            _check(name, getattr(self, name), 0, _U32)
        for name in ("idVendor", "idProduct", "bcdDevice"):
            _check(name, getattr(self, name), 0, _U16)
        for name in (
            "bDeviceClass",
            "bDeviceSubClass",
            "bDeviceProtocol",
            "bConfigurationValue",
            "bNumConfigurations",
            "bNumInterfaces",
        ):
            _check(name, getattr(self, name), 0, _U8)
        if self.interfaces and len(self.interfaces) != self.bNumInterfaces:
            raise ValueError(
                f"{len(self.interfaces)} interface records for bNumInterfaces="
                f"{self.bNumInterfaces}: peers read exactly bNumInterfaces of them"
            )
        for interface in self.interfaces:
            for field in dataclasses.fields(interface):
                _check(field.name, getattr(interface, field.name), 0, _U8)

    @property
    def devid(self) -> int:
        """``busnum << 16 | devnum``: what the importer puts in every URB header."""
        return (self.busnum << 16 | self.devnum) & _U32

    @classmethod
    def from_summary(
        cls, summary: DeviceSummary, *, busid: str, busnum: int, devnum: int, path: str
    ) -> ExportedDevice:
        """The record of a device model, from its :class:`~ccid.usb.DeviceSummary`."""
        return cls(
            path=path,
            busid=busid,
            busnum=busnum,
            devnum=devnum,
            speed=summary.speed,
            idVendor=summary.idVendor,
            idProduct=summary.idProduct,
            bcdDevice=summary.bcdDevice,
            bDeviceClass=summary.bDeviceClass,
            bDeviceSubClass=summary.bDeviceSubClass,
            bDeviceProtocol=summary.bDeviceProtocol,
            bConfigurationValue=summary.bConfigurationValue,
            bNumConfigurations=summary.bNumConfigurations,
            bNumInterfaces=len(summary.interfaces),
            interfaces=summary.interfaces,
        )

    def without_interfaces(self) -> ExportedDevice:
        """The same record as OP_REP_IMPORT carries it: no interface records."""
        return dataclasses.replace(self, interfaces=())


# --- OP phase ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpReqDevlist:
    """OP_REQ_DEVLIST: which devices are exportable? (``usbip list -r``)."""

    CODE: ClassVar[OpCode] = OpCode.OP_REQ_DEVLIST


@dataclass(frozen=True, slots=True)
class OpRepDevlist:
    """OP_REP_DEVLIST: the exportable devices, each with its interface records.

    A status other than OK ends the reply after the 8-byte header (no device count).
    """

    CODE: ClassVar[OpCode] = OpCode.OP_REP_DEVLIST

    devices: tuple[ExportedDevice, ...] = ()
    status: OpStatus | int = OpStatus.OK

    def __post_init__(self) -> None:
        _check("status", self.status, 0, _U32)
        if self.status != OpStatus.OK and self.devices:
            raise ValueError("an OP_REP_DEVLIST with an error status lists no devices")
        for device in self.devices:
            if len(device.interfaces) != device.bNumInterfaces:
                raise ValueError(
                    f"device {device.busid} needs its {device.bNumInterfaces} interface records "
                    "in OP_REP_DEVLIST"
                )


@dataclass(frozen=True, slots=True)
class OpReqImport:
    """OP_REQ_IMPORT: attach the device at ``busid`` (``usbip attach -b``)."""

    CODE: ClassVar[OpCode] = OpCode.OP_REQ_IMPORT

    busid: str

    def __post_init__(self) -> None:
        check_busid(self.busid)


@dataclass(frozen=True, slots=True)
class OpRepImport:
    """OP_REP_IMPORT: ``device`` (echoing the requested busid) when status is OK, else nothing.

    The record carries no interface records (see :meth:`ExportedDevice.without_interfaces`).
    """

    CODE: ClassVar[OpCode] = OpCode.OP_REP_IMPORT

    status: OpStatus | int = OpStatus.OK
    device: ExportedDevice | None = None

    def __post_init__(self) -> None:
        _check("status", self.status, 0, _U32)
        if (self.status == OpStatus.OK) != (self.device is not None):
            raise ValueError("OP_REP_IMPORT carries a device exactly when its status is OK")
        if self.device is not None and self.device.interfaces:
            raise ValueError("OP_REP_IMPORT carries no interface records")


# --- URB phase ---------------------------------------------------------------------------


def _check_basic(message: CmdSubmit | RetSubmit | CmdUnlink | RetUnlink) -> None:
    _check("seqnum", message.seqnum, 0, _U32)
    _check("devid", message.devid, 0, _U32)
    _check("direction", message.direction, 0, _U32)
    _check("ep", message.ep, 0, _U32)


@dataclass(frozen=True, slots=True)
class CmdSubmit:
    """USBIP_CMD_SUBMIT: a URB for endpoint number ``ep`` in ``direction``.

    An OUT URB carries exactly ``transfer_buffer_length`` bytes of ``data``; an IN URB none.
    On ep0, ``setup`` is the 8-byte SETUP (little-endian inside, as on the bus).
    ``number_of_packets`` is 0 (Linux) or -1 (usbip-win2) for anything but isochronous.
    """

    COMMAND: ClassVar[Command] = Command.USBIP_CMD_SUBMIT

    seqnum: int
    devid: int
    direction: Direction
    ep: int
    transfer_flags: int = 0
    transfer_buffer_length: int = 0
    start_frame: int = 0
    number_of_packets: int = 0
    interval: int = 0
    setup: bytes = bytes(8)
    data: bytes = b""

    def __post_init__(self) -> None:
        _check_basic(self)
        _check("direction", self.direction, 0, 1)
        _check("ep", self.ep, 0, MAX_ENDPOINT)
        _check("transfer_flags", self.transfer_flags, 0, _U32)
        _check("transfer_buffer_length", self.transfer_buffer_length, 0, _S32_MAX)
        _check_s32("start_frame", self.start_frame)
        _check_s32("number_of_packets", self.number_of_packets)
        _check_s32("interval", self.interval)
        if len(self.setup) != SetupPacket.SIZE:
            raise ValueError(f"setup must be 8 bytes, got {len(self.setup)}")
        expected = self.transfer_buffer_length if self.direction == Direction.OUT else 0
        if len(self.data) != expected:
            raise ValueError(
                f"a {Direction(self.direction).name} CMD_SUBMIT with transfer_buffer_length="
                f"{self.transfer_buffer_length} carries {expected} data bytes, got {len(self.data)}"
            )

    @property
    def setup_packet(self) -> SetupPacket:
        """``setup`` decoded (meaningful on ep0 only)."""
        return SetupPacket.from_bytes(self.setup)


@dataclass(frozen=True, slots=True)
class RetSubmit:
    """USBIP_RET_SUBMIT: the answer to CMD_SUBMIT ``seqnum``.

    For an IN URB ``data`` holds the ``actual_length`` bytes read; for an OUT URB ``data`` is
    empty and ``actual_length`` says how many bytes the device accepted. The Linux stub sends
    ``devid``, ``direction`` and ``ep`` as 0, so they default to it.
    """

    COMMAND: ClassVar[Command] = Command.USBIP_RET_SUBMIT

    seqnum: int
    status: int = 0
    actual_length: int = 0
    start_frame: int = 0
    number_of_packets: int = 0
    error_count: int = 0
    data: bytes = b""
    devid: int = 0
    direction: int = 0
    ep: int = 0

    def __post_init__(self) -> None:
        _check_basic(self)
        _check_s32("status", self.status)
        _check("actual_length", self.actual_length, 0, _S32_MAX)
        _check_s32("start_frame", self.start_frame)
        _check_s32("number_of_packets", self.number_of_packets)
        _check_s32("error_count", self.error_count)
        if self.data and len(self.data) != self.actual_length:
            raise ValueError(
                f"RET_SUBMIT data is {len(self.data)} bytes but actual_length={self.actual_length}"
            )


@dataclass(frozen=True, slots=True)
class CmdUnlink:
    """USBIP_CMD_UNLINK: cancel CMD_SUBMIT ``unlink_seqnum``; ``seqnum`` is the unlink's own."""

    COMMAND: ClassVar[Command] = Command.USBIP_CMD_UNLINK

    seqnum: int
    devid: int
    unlink_seqnum: int
    direction: int = 0
    ep: int = 0

    def __post_init__(self) -> None:
        _check_basic(self)
        _check("direction", self.direction, 0, 1)
        _check("ep", self.ep, 0, MAX_ENDPOINT)
        _check("unlink_seqnum", self.unlink_seqnum, 0, _U32)


@dataclass(frozen=True, slots=True)
class RetUnlink:
    """USBIP_RET_UNLINK: the answer to CMD_UNLINK ``seqnum`` (the unlink's, not the victim's).

    ``status`` is ``-104`` (ECONNRESET) when the victim was cancelled, 0 when it had already
    been answered.
    """

    COMMAND: ClassVar[Command] = Command.USBIP_RET_UNLINK

    seqnum: int
    status: int = 0
    devid: int = 0
    direction: int = 0
    ep: int = 0

    def __post_init__(self) -> None:
        _check_basic(self)
        _check_s32("status", self.status)


OpRequest = OpReqDevlist | OpReqImport
OpReply = OpRepDevlist | OpRepImport
URBRequest = CmdSubmit | CmdUnlink
URBReply = RetSubmit | RetUnlink
Request = OpRequest | URBRequest
"""What an importer (client) sends."""
Reply = OpReply | URBReply
"""What an exporter (server) sends."""
USBIPMessage = Request | Reply

# Both builds copy and pickle these values alike (see copy_by_constructor).
copy_by_constructor(
    ExportedDevice,
    OpReqDevlist,
    OpRepDevlist,
    OpReqImport,
    OpRepImport,
    CmdSubmit,
    RetSubmit,
    CmdUnlink,
    RetUnlink,
)
