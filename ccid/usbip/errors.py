"""Exceptions raised by the USB/IP codec, connections, server and client."""

from __future__ import annotations

from cardfloor.errors import field_message

from .constants import OpStatus, URBStatus


class USBIPError(Exception):
    """Base class of every exception this package raises on purpose."""


class ProtocolError(USBIPError):
    """The peer sent bytes that break the protocol; the connection cannot go on.

    ``field`` names what was wrong (``"op_common.version"``, ``"CMD_SUBMIT.ep"``...) and
    ``value`` is what the peer sent there.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        super().__init__(field_message(reason, field, value))
        self.reason = reason
        self.field = field
        self.value = value


class LocalProtocolError(USBIPError):
    """This side asked for something the connection's state does not allow."""


class ImportRefusedError(USBIPError):
    """The server answered OP_REQ_IMPORT with a status other than OK."""

    def __init__(self, busid: str, status: int) -> None:
        name = OpStatus(status).name if status in OpStatus._value2member_map_ else str(status)
        super().__init__(f"import of busid {busid!r} refused with status {name}")
        self.busid = busid
        self.status = status


class URBError(USBIPError):
    """A URB completed with a non-zero status (``-32`` is a STALL, ``-104`` an unlink)."""

    def __init__(self, seqnum: int, status: int) -> None:
        name = URBStatus(status).name if status in URBStatus._value2member_map_ else str(status)
        super().__init__(f"URB seqnum={seqnum} failed with status {status} ({name})")
        self.seqnum = seqnum
        self.status = status


class ConnectionClosedError(USBIPError):
    """The connection ended before the operation completed."""
