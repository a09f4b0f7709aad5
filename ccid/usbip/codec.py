"""Sans-IO codec: messages to bytes with :func:`encode_usbip`; bytes to messages with the decoders.

Decoders are pull-based, like h11: :meth:`feed` only buffers, and each ``next_*`` call returns
one complete message or None. The caller handles a message before asking for the next one, so
a connection's state (the import decision, the URBs still pending) always applies to the very
next message. A header is checked as soon as it is in, before any payload it announces is
read: a URB asking 4 GiB (or an OUT URB announcing more than ``max_transfer_length``) is
refused after its 48 bytes, so nothing beyond one bounded message is ever buffered. After a
:class:`USBIPRemoteProtocolError` the stream is out of sync and every later call raises it again.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Final

from cardfloor.frozen import slot_setters
from cardfloor.native import is_compiled, is_native

from ..usb import InterfaceSummary, Speed
from .constants import (
    BUSID_SIZE,
    MAX_ENDPOINT,
    NON_ISO_PACKETS,
    OP_COMMON_SIZE,
    PATH_SIZE,
    URB_HEADER_SIZE,
    USB_DEVICE_SIZE,
    USB_INTERFACE_SIZE,
    USBIP_VERSION,
    Command,
    Direction,
    OpCode,
    OpStatus,
)
from .errors import USBIPRemoteProtocolError
from .messages import (
    CmdSubmit,
    CmdUnlink,
    ExportedDevice,
    OpRepDevlist,
    OpRepImport,
    OpReply,
    OpReqDevlist,
    OpReqImport,
    Request,
    RetSubmit,
    RetUnlink,
    URBReply,
    USBIPMessage,
)

#: Largest payload a message may carry by default (OUT data, IN data in a reply): CCID's biggest
#: message (65,564 bytes with extended APDUs) with room to spare, far below the 2 GiB a hostile
#: header may announce. An IN URB may ask for more; it is simply never given more than this.
DEFAULT_MAX_TRANSFER_LENGTH: Final = 256 * 1024
#: Most devices a client accepts in one OP_REP_DEVLIST.
DEFAULT_MAX_DEVICES: Final = 1024

_OP_COMMON: Final = struct.Struct(">HHI")
_U32: Final = struct.Struct(">I")
_BUSID: Final = struct.Struct(f"{BUSID_SIZE}s")
_USB_DEVICE: Final = struct.Struct(f">{PATH_SIZE}s{BUSID_SIZE}sIIIHHHBBBBBB")
_USB_INTERFACE: Final = struct.Struct(">BBBx")
# The 48-byte headers: the 20-byte basic part (command, seqnum, devid, direction, ep) first.
_CMD_SUBMIT: Final = struct.Struct(">IIIIIIiiii8s")
_RET_SUBMIT: Final = struct.Struct(">IIIIIiiiii8x")
_CMD_UNLINK: Final = struct.Struct(">IIIIII24x")
_RET_UNLINK: Final = struct.Struct(">IIIIIi24x")

_SPEEDS: Final = {speed.value: speed for speed in Speed}
_OP_STATUSES: Final = {status.value: status for status in OpStatus}

assert _USB_DEVICE.size == USB_DEVICE_SIZE
assert _USB_INTERFACE.size == USB_INTERFACE_SIZE
assert _CMD_SUBMIT.size == _RET_SUBMIT.size == _CMD_UNLINK.size == URB_HEADER_SIZE

_unpack_cmd_submit: Final = _CMD_SUBMIT.unpack_from
_CMD_SUBMIT_CODE: Final = int(Command.USBIP_CMD_SUBMIT)
_OUT: Final = int(Direction.OUT)
_IN: Final = int(Direction.IN)
_DIRECTIONS: Final = (Direction.OUT, Direction.IN)

# CMD_SUBMITs (every URB) are built without CmdSubmit.__init__ (see cardfloor.frozen):
# RequestDecoder checks what __post_init__ would (direction, ep, the length against the data
# carried) before building, and the struct guarantees the rest (u32 and s32 fields, an 8-byte
# setup). In Python through the slot setters; where this module and the messages are both
# compiled, the class is native and a store to its field is a plain store
# (cardfloor.native.is_native).
_new_cmd_submit: Final = CmdSubmit.__new__
(
    _set_seqnum,
    _set_devid,
    _set_direction,
    _set_ep,
    _set_transfer_flags,
    _set_transfer_buffer_length,
    _set_start_frame,
    _set_number_of_packets,
    _set_interval,
    _set_setup,
    _set_data,
) = slot_setters(
    CmdSubmit,
    (
        "seqnum",
        "devid",
        "direction",
        "ep",
        "transfer_flags",
        "transfer_buffer_length",
        "start_frame",
        "number_of_packets",
        "interval",
        "setup",
        "data",
    ),
)


# --- encoding ------------------------------------------------------------------------------


def _encode_device(device: ExportedDevice, *, interfaces: bool) -> bytes:
    record = _USB_DEVICE.pack(
        device.path.encode("utf-8", "surrogateescape"),
        device.busid.encode("ascii"),
        device.busnum,
        device.devnum,
        device.speed,
        device.idVendor,
        device.idProduct,
        device.bcdDevice,
        device.bDeviceClass,
        device.bDeviceSubClass,
        device.bDeviceProtocol,
        device.bConfigurationValue,
        device.bNumConfigurations,
        device.bNumInterfaces,
    )
    if not interfaces:
        return record
    return record + b"".join(
        _USB_INTERFACE.pack(i.bInterfaceClass, i.bInterfaceSubClass, i.bInterfaceProtocol)
        for i in device.interfaces
    )


def encode_usbip(message: USBIPMessage) -> bytes:
    """Return the wire bytes of ``message``: header, fixed records and payload."""
    match message:
        case CmdSubmit():
            header = _CMD_SUBMIT.pack(
                message.COMMAND,
                message.seqnum,
                message.devid,
                message.direction,
                message.ep,
                message.transfer_flags,
                message.transfer_buffer_length,
                message.start_frame,
                message.number_of_packets,
                message.interval,
                message.setup,
            )
            return header + message.data
        case RetSubmit():
            header = _RET_SUBMIT.pack(
                message.COMMAND,
                message.seqnum,
                message.devid,
                message.direction,
                message.ep,
                message.status,
                message.actual_length,
                message.start_frame,
                message.number_of_packets,
                message.error_count,
            )
            return header + message.data
        case CmdUnlink():
            return _CMD_UNLINK.pack(
                message.COMMAND,
                message.seqnum,
                message.devid,
                message.direction,
                message.ep,
                message.unlink_seqnum,
            )
        case RetUnlink():
            return _RET_UNLINK.pack(
                message.COMMAND,
                message.seqnum,
                message.devid,
                message.direction,
                message.ep,
                message.status,
            )
        case OpReqDevlist():
            return _OP_COMMON.pack(USBIP_VERSION, message.CODE, 0)
        case OpReqImport():
            return _OP_COMMON.pack(USBIP_VERSION, message.CODE, 0) + _BUSID.pack(
                message.busid.encode("ascii")
            )
        case OpRepDevlist():
            header = _OP_COMMON.pack(USBIP_VERSION, message.CODE, message.status)
            if message.status != OpStatus.OK:
                return header
            records = (_encode_device(device, interfaces=True) for device in message.devices)
            return header + _U32.pack(len(message.devices)) + b"".join(records)
        case OpRepImport():
            header = _OP_COMMON.pack(USBIP_VERSION, message.CODE, message.status)
            if message.device is None:
                return header
            return header + _encode_device(message.device, interfaces=False)
    raise TypeError(f"not a USB/IP message: {message!r}")


# --- decoding helpers ----------------------------------------------------------------------


def _text(raw: bytes) -> bytes:
    return raw.split(b"\0", 1)[0]


def _decode_busid(raw: bytes, field: str) -> str:
    text = _text(raw)
    if not text or len(text) >= BUSID_SIZE or not text.isascii():
        raise USBIPRemoteProtocolError(
            "busid must be 1-31 ASCII characters and a NUL", field=field, value=raw
        )
    return text.decode("ascii")


def _decode_device(
    source: bytes | bytearray, offset: int, field: str, *, interfaces: bool
) -> ExportedDevice:
    path, busid, busnum, devnum, speed, vid, pid, bcd, *device_bytes = _USB_DEVICE.unpack_from(
        source, offset
    )
    cls, subclass, protocol, configuration, configurations, count = device_bytes
    start = offset + USB_DEVICE_SIZE
    records = tuple(
        InterfaceSummary(*_USB_INTERFACE.unpack_from(source, start + index * USB_INTERFACE_SIZE))
        for index in range(count if interfaces else 0)
    )
    text = _text(path)
    if len(text) >= PATH_SIZE:
        # A C string that fills its field has no NUL: the peer's own tools would read past it.
        raise USBIPRemoteProtocolError(
            "path must end with a NUL", field=f"{field}.path", value=path
        )
    return ExportedDevice(
        # Paths are informational: keep any bytes, exactly, rather than refuse a peer over them.
        path=text.decode("utf-8", "surrogateescape"),
        busid=_decode_busid(busid, f"{field}.busid"),
        busnum=busnum,
        devnum=devnum,
        speed=_SPEEDS.get(speed, speed),
        idVendor=vid,
        idProduct=pid,
        bcdDevice=bcd,
        bDeviceClass=cls,
        bDeviceSubClass=subclass,
        bDeviceProtocol=protocol,
        bConfigurationValue=configuration,
        bNumConfigurations=configurations,
        bNumInterfaces=count,
        interfaces=records,
    )


def _check_version(version: int) -> None:
    if version != USBIP_VERSION:
        raise USBIPRemoteProtocolError(
            f"unsupported USB/IP version (we speak 0x{USBIP_VERSION:04X})",
            field="op_common.version",
            value=version,
        )


def _check_op_common(version: int, code: int, expected: OpCode) -> None:
    _check_version(version)
    if code != expected:
        raise USBIPRemoteProtocolError(
            f"expected {expected.name} (0x{expected.value:04X})", field="op_common.code", value=code
        )


def _check_endpoint(name: str, direction: int, ep: int) -> None:
    if direction not in (Direction.OUT, Direction.IN):
        raise USBIPRemoteProtocolError(
            "direction must be 0 or 1", field=f"{name}.direction", value=direction
        )
    if ep > MAX_ENDPOINT:
        raise USBIPRemoteProtocolError("endpoint number above 15", field=f"{name}.ep", value=ep)


def _check_packets(name: str, number_of_packets: int) -> None:
    if number_of_packets not in NON_ISO_PACKETS:
        # Isochronous URBs carry descriptors after the data; nothing here exports ISO endpoints.
        raise USBIPRemoteProtocolError(
            "isochronous URBs are not supported (non-ISO URBs carry 0 or 0xFFFFFFFF)",
            field=f"{name}.number_of_packets",
            value=number_of_packets & 0xFFFFFFFF,
        )


class Phase(enum.Enum):
    """Which kind of message a decoder reads next."""

    OP = "op"
    URB = "urb"
    #: Client side: the OP exchange ended without an import; nothing more may arrive.
    DONE = "done"


_URB: Final = Phase.URB  # a module global reads faster than an enum class attribute


class _Decoder:
    __slots__ = ("_buffer", "_error", "_max_transfer_length", "phase")

    def __init__(self, *, max_transfer_length: int) -> None:
        if not 0 <= max_transfer_length <= 0x7FFFFFFF:
            raise ValueError(f"max_transfer_length={max_transfer_length} must fit in an s32")
        self._max_transfer_length = max_transfer_length
        self._buffer = bytearray()
        self._error: USBIPRemoteProtocolError | None = None
        self.phase = Phase.OP

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes (split anywhere); read messages with the ``next_*`` method."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def _fail(self, error: USBIPRemoteProtocolError) -> USBIPRemoteProtocolError:
        self._error = error
        return error

    def _take(self, size: int, start: int = 0) -> bytes:
        """Remove ``size`` bytes from the buffer; return those from ``start`` on."""
        buffer = self._buffer
        # Slicing copies twice but costs less than a memoryview for messages this small.
        data = bytes(buffer[start:size])
        # bytearray deletes from the front in O(1): it only moves its start pointer.
        del buffer[:size]
        return data

    def _check_length(self, name: str, length: int, *, carried: bool = True) -> None:
        """Refuse a negative length, and one above the limit if its bytes follow the header."""
        if length < 0 or (carried and length > self._max_transfer_length):
            raise USBIPRemoteProtocolError(
                f"transfer length outside [0, max_transfer_length={self._max_transfer_length}]",
                field=name,
                value=length & 0xFFFFFFFF,
            )


class RequestDecoder(_Decoder):
    """The server's side: bytes from an importer become OP requests, then URB commands.

    It reads one OP request; after a successful import the connection calls
    :meth:`start_urb_phase` and it reads CMD_SUBMIT and CMD_UNLINK.
    """

    __slots__ = ()

    def __init__(self, *, max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH) -> None:
        super().__init__(max_transfer_length=max_transfer_length)

    def start_urb_phase(self) -> None:
        """The import succeeded: from now on the stream carries URB commands."""
        self.phase = Phase.URB

    def next_request(self) -> Request | None:
        """Return the next complete request, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            if self.phase is _URB:
                return self._next_command()
            return self._next_op_request()
        except USBIPRemoteProtocolError as error:
            raise self._fail(error) from None

    def _next_op_request(self) -> OpReqDevlist | OpReqImport | None:
        buffer = self._buffer
        if len(buffer) < OP_COMMON_SIZE:
            return None
        version, code, _status = _OP_COMMON.unpack_from(buffer)
        _check_version(version)
        if code == OpCode.OP_REQ_DEVLIST:
            self._take(OP_COMMON_SIZE)
            return OpReqDevlist()
        if code != OpCode.OP_REQ_IMPORT:
            raise USBIPRemoteProtocolError(
                "an importer sends OP_REQ_DEVLIST (0x8005) or OP_REQ_IMPORT (0x8003)",
                field="op_common.code",
                value=code,
            )
        # `usbip attach` writes the header and the busid separately: wait for both.
        if len(buffer) < OP_COMMON_SIZE + BUSID_SIZE:
            return None
        busid = self._take(OP_COMMON_SIZE + BUSID_SIZE, OP_COMMON_SIZE)
        return OpReqImport(_decode_busid(busid, "OP_REQ_IMPORT.busid"))

    def _next_command(self) -> CmdSubmit | CmdUnlink | None:
        buffer = self._buffer
        if len(buffer) < URB_HEADER_SIZE:
            return None
        # Every URB header is 48 bytes: read it as CMD_SUBMIT's, the commonest, in one go.
        (
            command,
            seqnum,
            devid,
            direction,
            ep,
            transfer_flags,
            length,
            start_frame,
            number_of_packets,
            interval,
            setup,
        ) = _unpack_cmd_submit(buffer)
        if command != _CMD_SUBMIT_CODE:
            return self._next_unlink(command)
        # The checks run inline and call the helpers only to raise their errors, in order.
        if direction > _IN or ep > MAX_ENDPOINT:
            _check_endpoint("CMD_SUBMIT", direction, ep)
        if direction == _OUT:
            if length < 0 or length > self._max_transfer_length:
                self._check_length("CMD_SUBMIT.transfer_buffer_length", length)
            end = URB_HEADER_SIZE + length
        else:
            if length < 0:
                self._check_length("CMD_SUBMIT.transfer_buffer_length", length, carried=False)
            end = URB_HEADER_SIZE
        if number_of_packets not in NON_ISO_PACKETS:
            _check_packets("CMD_SUBMIT", number_of_packets)
        if len(buffer) < end:
            return None
        data = bytes(buffer[URB_HEADER_SIZE:end])
        del buffer[:end]
        message = _new_cmd_submit(CmdSubmit)
        if _NATIVE:
            message.seqnum = seqnum  # type: ignore[misc]
            message.devid = devid  # type: ignore[misc]
            message.direction = _DIRECTIONS[direction]  # type: ignore[misc]
            message.ep = ep  # type: ignore[misc]
            message.transfer_flags = transfer_flags  # type: ignore[misc]
            message.transfer_buffer_length = length  # type: ignore[misc]
            message.start_frame = start_frame  # type: ignore[misc]
            message.number_of_packets = number_of_packets  # type: ignore[misc]
            message.interval = interval  # type: ignore[misc]
            message.setup = setup  # type: ignore[misc]
            message.data = data  # type: ignore[misc]
            return message
        _set_seqnum(message, seqnum)
        _set_devid(message, devid)
        _set_direction(message, _DIRECTIONS[direction])
        _set_ep(message, ep)
        _set_transfer_flags(message, transfer_flags)
        _set_transfer_buffer_length(message, length)
        _set_start_frame(message, start_frame)
        _set_number_of_packets(message, number_of_packets)
        _set_interval(message, interval)
        _set_setup(message, setup)
        _set_data(message, data)
        return message

    def _next_unlink(self, command: int) -> CmdUnlink:
        if command == Command.USBIP_CMD_UNLINK:
            _, seqnum, devid, direction, ep, unlink_seqnum = _CMD_UNLINK.unpack_from(self._buffer)
            _check_endpoint("CMD_UNLINK", direction, ep)
            self._take(URB_HEADER_SIZE)
            return CmdUnlink(seqnum, devid, unlink_seqnum, direction, ep)
        raise USBIPRemoteProtocolError(
            "an importer sends only CMD_SUBMIT (1) and CMD_UNLINK (2)",
            field="usbip_header_basic.command",
            value=command,
        )


_NATIVE: Final = is_compiled(_check_packets) and is_native(CmdSubmit)


class ReplyDecoder(_Decoder):
    """The client's side: bytes from an exporter become OP replies, then URB replies.

    ``submitted(seqnum)`` returns the pending CMD_SUBMIT with that seqnum, or None: a
    RET_SUBMIT is framed by it (IN replies carry ``actual_length`` bytes, OUT replies none,
    whatever the reply's own direction field says) and refused when it names no pending URB
    or returns more bytes than asked, as Linux vhci does.
    """

    __slots__ = ("_expected", "_max_devices", "_submitted")

    def __init__(
        self,
        submitted: Callable[[int], CmdSubmit | None],
        *,
        max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
        max_devices: int = DEFAULT_MAX_DEVICES,
    ) -> None:
        super().__init__(max_transfer_length=max_transfer_length)
        self._submitted = submitted
        self._max_devices = max_devices
        self._expected: OpCode | None = None

    def expect(self, code: OpCode) -> None:
        """The OP reply that answers the request just sent (OP_REP_DEVLIST or OP_REP_IMPORT)."""
        self._expected = code

    def next_reply(self) -> OpReply | URBReply | None:
        """Return the next complete reply, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        try:
            if self.phase is Phase.URB:
                return self._next_urb_reply()
            return self._next_op_reply()
        except USBIPRemoteProtocolError as error:
            raise self._fail(error) from None

    def _next_op_reply(self) -> OpReply | None:
        buffer = self._buffer
        if not buffer:
            return None
        if self.phase is Phase.DONE or self._expected is None:
            raise USBIPRemoteProtocolError(
                "bytes nobody asked for", field="op_common", value=bytes(buffer[:OP_COMMON_SIZE])
            )
        if len(buffer) < OP_COMMON_SIZE:
            return None
        version, code, status = _OP_COMMON.unpack_from(buffer)
        _check_op_common(version, code, self._expected)
        status = _OP_STATUSES.get(status, status)
        if code == OpCode.OP_REP_IMPORT:
            if status != OpStatus.OK:
                self._take(OP_COMMON_SIZE)
                self.phase = Phase.DONE
                return OpRepImport(status)
            if len(buffer) < OP_COMMON_SIZE + USB_DEVICE_SIZE:
                return None
            device = _decode_device(buffer, OP_COMMON_SIZE, "OP_REP_IMPORT", interfaces=False)
            self._take(OP_COMMON_SIZE + USB_DEVICE_SIZE)
            self.phase = Phase.URB
            return OpRepImport(status, device)
        # OP_REP_DEVLIST
        if status != OpStatus.OK:
            self._take(OP_COMMON_SIZE)
            self.phase = Phase.DONE
            return OpRepDevlist(status=status)
        if len(buffer) < OP_COMMON_SIZE + 4:
            return None
        count = _U32.unpack_from(buffer, OP_COMMON_SIZE)[0]
        if count > self._max_devices:
            raise USBIPRemoteProtocolError(
                f"more than max_devices={self._max_devices}",
                field="OP_REP_DEVLIST.ndev",
                value=count,
            )
        # Walk the records: each is a device then its bNumInterfaces interface records.
        offsets = []
        end = OP_COMMON_SIZE + 4
        for _ in range(count):
            if len(buffer) < end + USB_DEVICE_SIZE:
                return None
            offsets.append(end)
            end += USB_DEVICE_SIZE + buffer[end + USB_DEVICE_SIZE - 1] * USB_INTERFACE_SIZE
        if len(buffer) < end:
            return None
        devices = tuple(
            _decode_device(buffer, start, "OP_REP_DEVLIST", interfaces=True) for start in offsets
        )
        self._take(end)
        self.phase = Phase.DONE
        return OpRepDevlist(devices, status)

    def _next_urb_reply(self) -> URBReply | None:
        buffer = self._buffer
        if len(buffer) < URB_HEADER_SIZE:
            return None
        command, seqnum = struct.unpack_from(">II", buffer)
        if command == Command.USBIP_RET_SUBMIT:
            (
                _,
                _,
                devid,
                direction,
                ep,
                status,
                actual_length,
                start_frame,
                number_of_packets,
                error_count,
            ) = _RET_SUBMIT.unpack_from(buffer)
            submit = self._submitted(seqnum)
            if submit is None:
                # Linux vhci drops the device here ("cannot find a urb of seqnum").
                raise USBIPRemoteProtocolError(
                    "no pending URB has this seqnum", field="RET_SUBMIT.seqnum", value=seqnum
                )
            self._check_length("RET_SUBMIT.actual_length", actual_length)
            _check_packets("RET_SUBMIT", number_of_packets)
            payload = 0
            if submit.direction == Direction.IN:
                if actual_length > submit.transfer_buffer_length:
                    raise USBIPRemoteProtocolError(
                        f"more bytes than the URB asked for "
                        f"(transfer_buffer_length={submit.transfer_buffer_length})",
                        field="RET_SUBMIT.actual_length",
                        value=actual_length,
                    )
                payload = actual_length
            if len(buffer) < URB_HEADER_SIZE + payload:
                return None
            data = self._take(URB_HEADER_SIZE + payload, URB_HEADER_SIZE)
            return RetSubmit(
                seqnum,
                status,
                actual_length,
                start_frame,
                number_of_packets,
                error_count,
                data,
                devid,
                direction,
                ep,
            )
        if command == Command.USBIP_RET_UNLINK:
            _, _, devid, direction, ep, status = _RET_UNLINK.unpack_from(buffer)
            self._take(URB_HEADER_SIZE)
            return RetUnlink(seqnum, status, devid, direction, ep)
        raise USBIPRemoteProtocolError(
            "an exporter sends only RET_SUBMIT (3) and RET_UNLINK (4)",
            field="usbip_header_basic.command",
            value=command,
        )
