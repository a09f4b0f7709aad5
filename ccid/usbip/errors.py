"""Exceptions raised by the USB/IP codec, connections, server and client.

The tree, shaped like h11's and vscard's::

    USBIPError                          everything this package raises on purpose
    ├── USBIPProtocolError              abstract: the protocol cannot go on; field and value
    │   ├── USBIPRemoteProtocolError    the peer's bytes broke it: close the connection
    │   └── USBIPLocalProtocolError     this side asked what the connection's state forbids
    ├── ImportRefusedError              OP_REP_IMPORT said no (status)
    ├── URBError                        a URB ended with a non-zero status
    └── USBIPConnectionClosedError      the connection ended before the operation did

``except USBIPProtocolError`` catches both sides; a read loop catches
:class:`USBIPRemoteProtocolError` only, so that a bug on our side is never blamed on the peer.
Every name carries ``USBIP`` (or a word only USB/IP has) so that code composing this package
with :mod:`vscard` never needs an import alias to tell them apart.
"""

from __future__ import annotations

from cardfloor.errors import field_message

from .constants import OpStatus, URBStatus


class USBIPError(Exception):
    """Base class of every exception this package raises on purpose."""


class USBIPProtocolError(USBIPError):
    """The protocol cannot go on. Never raised itself: catch it to catch both sides' errors.

    ``field`` names what was wrong (``"op_common.version"``, ``"CMD_SUBMIT.ep"``,
    ``"state"``...) and ``value`` is what it held; ``reason`` is the rule it broke.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        if type(self) is USBIPProtocolError:
            raise TypeError("raise USBIPRemoteProtocolError or USBIPLocalProtocolError")
        super().__init__(field_message(reason, field, value))
        self.reason = reason
        self.field = field
        self.value = value


class USBIPRemoteProtocolError(USBIPProtocolError):
    """The peer sent bytes that break the protocol; the connection cannot go on."""


class USBIPLocalProtocolError(USBIPProtocolError):
    """This side asked for something the connection's state does not allow; nothing was queued."""


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


class USBIPConnectionClosedError(USBIPError):
    """The connection ended before the operation completed."""
