"""Sans-IO importer side of one USB/IP connection: what ``usbip attach`` and vhci do.

A connection asks once, for the device list or for an import; after an accepted import it
submits URBs and unlinks them. Its checks are Linux vhci's: a RET_SUBMIT for no pending URB, an
IN reply longer than asked, or a RET_UNLINK for no unlink in flight raises
:class:`USBIPRemoteProtocolError` (vhci drops the device for the first two). A URB whose unlink is
answered while it is still pending ends with that answer (:class:`URBUnlinked`); any
RET_SUBMIT for it afterwards is an error.

Driving it is the project's one sans-IO idiom (as the server side and vscard's connections):
``receive_data(bytes) -> list[event]``, then :meth:`~USBIPClientConnection.data_to_send`. One
call consumes all it is given: bytes after OP_REP_IMPORT in the same read are decoded as URB
replies in that call, after :class:`ImportAccepted`. Its peer is the server we chose, so there
is no per-call bound (and no ``pending``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

from ..usb import SetupPacket
from .codec import DEFAULT_MAX_DEVICES, DEFAULT_MAX_TRANSFER_LENGTH, ReplyDecoder, encode_usbip
from .constants import Direction, OpCode, URBStatus
from .errors import USBIPLocalProtocolError, USBIPRemoteProtocolError
from .events import (
    DevlistReceived,
    ImportAccepted,
    ImportRefused,
    UnlinkAnswered,
    URBCompleted,
    URBUnlinked,
    USBIPClientEvent,
)
from .messages import (
    CmdSubmit,
    CmdUnlink,
    ExportedDevice,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    RetSubmit,
    RetUnlink,
    USBIPMessage,
    check_busid,
)

_U32 = 0xFFFFFFFF


class USBIPClientState(enum.Enum):
    """Where a :class:`USBIPClientConnection` is."""

    IDLE = "idle"
    WAIT_DEVLIST = "wait_devlist"
    WAIT_IMPORT = "wait_import"
    URB = "urb"
    #: The OP exchange ended without an import, or the connection failed.
    CLOSED = "closed"


class USBIPClientConnection:
    """One connection to a USB/IP server, seen from the importer."""

    def __init__(
        self,
        *,
        max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
        max_devices: int = DEFAULT_MAX_DEVICES,
        first_seqnum: int = 1,
    ) -> None:
        self._decoder = ReplyDecoder(
            self._pending_submit, max_transfer_length=max_transfer_length, max_devices=max_devices
        )
        self._pending: dict[int, CmdSubmit] = {}
        self._unlinks: dict[int, int] = {}
        self._next_seqnum = first_seqnum & _U32
        self._outgoing: list[bytes] = []  # encoded messages, joined once per write
        self._busid = ""
        self._error: USBIPRemoteProtocolError | None = None
        self.state = USBIPClientState.IDLE
        self.device: ExportedDevice | None = None
        """The imported device, once the server accepted the import."""

    @property
    def pending_urbs(self) -> Mapping[int, CmdSubmit]:
        """URBs submitted and not yet answered, by seqnum (read-only view)."""
        return MappingProxyType(self._pending)

    @property
    def error(self) -> USBIPRemoteProtocolError | None:
        """The error the server's bytes caused, or None; once set, :meth:`receive_data`
        raises it."""
        return self._error

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes queued for the server."""
        data = b"".join(self._outgoing)  # one message: no copy
        self._outgoing.clear()
        return data

    def request_devlist(self) -> None:
        """Queue OP_REQ_DEVLIST; :class:`DevlistReceived` reports the answer."""
        self._expect(USBIPClientState.IDLE, "request_devlist")
        self._send(OpReqDevlist())
        self._decoder.expect(OpCode.OP_REP_DEVLIST)
        self.state = USBIPClientState.WAIT_DEVLIST

    def request_import(self, busid: str) -> None:
        """Queue OP_REQ_IMPORT for ``busid``; :class:`ImportAccepted` or :class:`ImportRefused`."""
        self._expect(USBIPClientState.IDLE, "request_import")
        check_busid(busid)
        self._busid = busid
        self._send(OpReqImport(busid))
        self._decoder.expect(OpCode.OP_REP_IMPORT)
        self.state = USBIPClientState.WAIT_IMPORT

    def submit(
        self,
        ep: int,
        direction: Direction,
        *,
        length: int = 0,
        data: bytes = b"",
        setup: SetupPacket | None = None,
        transfer_flags: int = 0,
        interval: int = 0,
        number_of_packets: int = 0,
    ) -> int:
        """Queue CMD_SUBMIT and return its seqnum.

        An IN URB asks for ``length`` bytes; an OUT URB sends ``data``. On ep0 pass ``setup``:
        its wLength is the transfer length.
        """
        self._expect(USBIPClientState.URB, "submit")
        assert self.device is not None
        if direction == Direction.OUT:
            length = len(data)
        seqnum = self._allocate_seqnum()
        submit = CmdSubmit(
            seqnum,
            self.device.devid,
            direction,
            ep,
            transfer_flags,
            length,
            0,
            number_of_packets,
            interval,
            setup.to_bytes() if setup is not None else bytes(8),
            data,
        )
        self._pending[seqnum] = submit
        self._send(submit)
        return seqnum

    def unlink(self, unlink_seqnum: int) -> int:
        """Queue CMD_UNLINK for URB ``unlink_seqnum``; return the unlink's own seqnum."""
        self._expect(USBIPClientState.URB, "unlink")
        assert self.device is not None
        seqnum = self._allocate_seqnum()
        self._unlinks[seqnum] = unlink_seqnum
        self._send(CmdUnlink(seqnum, self.device.devid, unlink_seqnum))
        return seqnum

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[USBIPClientEvent]:
        """Consume bytes from the server and return what they answered.

        Malformed input is a :class:`USBIPRemoteProtocolError`, kept in :attr:`error`. When
        replies came before it, their events are returned: act on them, then close. Otherwise
        the call raises it and the connection is closed; so does every later call.
        """
        if self._error is not None:
            self.close()
            raise self._error
        events: list[USBIPClientEvent] = []
        try:
            self._decoder.feed(data)
            while (reply := self._decoder.next_reply()) is not None:
                self._handle(reply, events)
        except USBIPRemoteProtocolError as error:
            self._error = error
            if events:
                return events
            self.close()
            raise
        return events

    def close(self) -> tuple[int, ...]:
        """Forget every URB (nothing more will answer them); return their seqnums."""
        left = tuple(self._pending)
        self._pending.clear()
        self._unlinks.clear()
        self.state = USBIPClientState.CLOSED
        return left

    # -- internals ------------------------------------------------------------------------

    def _expect(self, state: USBIPClientState, action: str) -> None:
        if self.state is not state:
            raise USBIPLocalProtocolError(
                f"{action} needs state {state.name}", field="state", value=self.state.name
            )

    def _send(self, message: USBIPMessage) -> None:
        self._outgoing.append(encode_usbip(message))

    def _pending_submit(self, seqnum: int) -> CmdSubmit | None:
        return self._pending.get(seqnum)

    def _allocate_seqnum(self) -> int:
        # Skip seqnums still in use after a wrap; vhci's counter wraps the same way.
        while True:
            seqnum = self._next_seqnum
            self._next_seqnum = (seqnum + 1) & _U32
            if seqnum not in self._pending and seqnum not in self._unlinks:
                return seqnum

    def _handle(self, reply: USBIPMessage, events: list[USBIPClientEvent]) -> None:
        match reply:
            case OpRepDevlist(devices, status):
                self.state = USBIPClientState.CLOSED
                events.append(DevlistReceived(devices, status))
            case OpRepImport(status, device) if device is not None:
                if device.busid != self._busid:
                    # `usbip attach` refuses this reply ("recv different busid").
                    raise USBIPRemoteProtocolError(
                        f"reply names another device than {self._busid!r}",
                        field="OP_REP_IMPORT.busid",
                        value=device.busid,
                    )
                self.device = device
                self.state = USBIPClientState.URB
                events.append(ImportAccepted(device))
            case OpRepImport(status):
                self.state = USBIPClientState.CLOSED
                events.append(ImportRefused(self._busid, status))
            case RetSubmit(seqnum):
                # The decoder framed it by this pending URB, so it exists.
                events.append(URBCompleted(self._pending.pop(seqnum), reply))
            case RetUnlink(seqnum, status):
                victim = self._unlinks.pop(seqnum, None)
                if victim is None:
                    raise USBIPRemoteProtocolError(
                        "no CMD_UNLINK with this seqnum is in flight",
                        field="RET_UNLINK.seqnum",
                        value=seqnum,
                    )
                submit = self._pending.pop(victim, None)
                if submit is not None:
                    # As vhci: the unlinked URB completes now, whatever comes later.
                    events.append(URBUnlinked(submit, status or URBStatus.ECONNRESET))
                events.append(UnlinkAnswered(seqnum, victim, status))
            case _:
                raise AssertionError(f"unexpected reply {reply!r}")
