"""What a sans-IO USB/IP connection reports after it consumed bytes from its peer.

:class:`~ccid.usbip.connection.ServerConnection` (the exporter) emits the *server events*;
:class:`~ccid.usbip.client_connection.ClientConnection` (the importer) the *client events*.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import CmdSubmit, ExportedDevice, RetSubmit

# --- server side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DevlistRequested:
    """OP_REQ_DEVLIST arrived: answer with ``send_devlist``."""


@dataclass(frozen=True, slots=True)
class ImportRequested:
    """OP_REQ_IMPORT arrived: answer with ``accept_import`` or ``refuse_import``."""

    busid: str


@dataclass(frozen=True, slots=True)
class URBSubmitted:
    """A URB to run on the device; answer it with ``complete(submit.seqnum, ...)``."""

    submit: CmdSubmit


@dataclass(frozen=True, slots=True)
class UnlinkRequested:
    """CMD_UNLINK ``seqnum`` for URB ``unlink_seqnum``, already answered.

    ``cancelled`` is True when the URB was still pending: it is now forgotten (stop its work;
    it is never answered) and RET_UNLINK says -104. False: it had already been answered (or
    never existed) and RET_UNLINK says 0.
    """

    seqnum: int
    unlink_seqnum: int
    cancelled: bool


@dataclass(frozen=True, slots=True)
class PortReset:
    """A hub-class SET_FEATURE(PORT_RESET) on ep0 (usbip-win2), already answered with OK.

    Reset the device. The URBs in ``cancelled`` were pending: they have been answered with
    -108 (ESHUTDOWN), as a real port reset flushes them, so stop their work.
    """

    seqnum: int
    cancelled: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class URBRefused:
    """A URB answered at once with ``status`` because of a local limit (``reason``)."""

    submit: CmdSubmit
    status: int
    reason: str


USBIPServerEvent = (
    DevlistRequested | ImportRequested | URBSubmitted | UnlinkRequested | PortReset | URBRefused
)

# --- client side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DevlistReceived:
    """OP_REP_DEVLIST: the server's exportable devices (empty when its status was not OK)."""

    devices: tuple[ExportedDevice, ...]
    status: int


@dataclass(frozen=True, slots=True)
class ImportAccepted:
    """OP_REP_IMPORT with status OK: the URB phase has begun with ``device``."""

    device: ExportedDevice


@dataclass(frozen=True, slots=True)
class ImportRefused:
    """OP_REP_IMPORT with an error ``status`` (2 busy, 4 unknown busid...)."""

    busid: str
    status: int


@dataclass(frozen=True, slots=True)
class URBCompleted:
    """RET_SUBMIT for ``submit``: ``ret.status``, ``ret.actual_length``, IN ``ret.data``."""

    submit: CmdSubmit
    ret: RetSubmit


@dataclass(frozen=True, slots=True)
class URBUnlinked:
    """``submit`` ended by the RET_UNLINK that cancelled it; it gets no RET_SUBMIT."""

    submit: CmdSubmit
    status: int


@dataclass(frozen=True, slots=True)
class UnlinkAnswered:
    """RET_UNLINK for CMD_UNLINK ``seqnum`` (of URB ``unlink_seqnum``) with its ``status``."""

    seqnum: int
    unlink_seqnum: int
    status: int


USBIPClientEvent = (
    DevlistReceived | ImportAccepted | ImportRefused | URBCompleted | URBUnlinked | UnlinkAnswered
)
