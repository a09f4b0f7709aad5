"""Sans-IO exporter side of one USB/IP connection: OP phase, then URB bookkeeping by seqnum.

The connection decides everything a peer can see on the wire; the adapter only runs device
work and moves bytes. States, and what moves between them:

==================  ==========================================  ==================
state               on                                          next state
==================  ==========================================  ==================
``OP``              OP_REQ_DEVLIST                              ``SEND_DEVLIST``
``OP``              OP_REQ_IMPORT                               ``DECIDE_IMPORT``
``SEND_DEVLIST``    :meth:`send_devlist`                        ``CLOSED``
``DECIDE_IMPORT``   :meth:`accept_import`                       ``URB``
``DECIDE_IMPORT``   :meth:`refuse_import`                       ``CLOSED``
any                 :meth:`close`, a :class:`USBIPRemoteProtocolError`     ``CLOSED``
==================  ==========================================  ==================

In ``URB`` every CMD_SUBMIT is recorded by seqnum until :meth:`complete` answers it. A
CMD_UNLINK is answered at once, with its own seqnum: -104 (ECONNRESET) when its URB was still
pending, which is then forgotten so no RET_SUBMIT for it is ever sent (Linux vhci drops the
device when one comes), and 0 when the URB had already been answered (a legitimate race in
Linux vhci, never held against the peer: drivers/usb/usbip/stub_rx.c, stub_recv_cmd_unlink).

A peer gets a budget, not a free ride: a CMD_SUBMIT past ``max_pending_urbs`` is answered -12
(ENOMEM), but past ``max_refused_urbs`` such refusals in one connection it is a
:class:`USBIPRemoteProtocolError` and the connection closes.

Driving it is the project's one sans-IO idiom (vscard's :class:`~vscard.HostConnection` is
driven the same way): ``receive_data(bytes) -> list[event]``, act on each event (the calls that
answer one may queue bytes), then write :meth:`~USBIPServerConnection.data_to_send`. The bytes
of one read are consumed whatever the state: requests that arrive with OP_REQ_IMPORT wait for
the decision, and :meth:`~USBIPServerConnection.accept_import` returns their events, so the
adapter never feeds bytes again for the protocol's sake. Work per call is bounded the way
vscard's is: one call handles at most ``max_requests`` requests and keeps the rest; while
:attr:`~USBIPServerConnection.pending`, ``receive_data(b"")`` handles the next batch, which lets
an adapter run other connections in between.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from .codec import DEFAULT_MAX_TRANSFER_LENGTH, RequestDecoder, encode_usbip
from .constants import (
    URB_HEADER_SIZE,
    USB_PORT_FEAT_RESET,
    USB_REQ_SET_FEATURE,
    USB_RT_PORT,
    Direction,
    OpStatus,
    TransferFlags,
    URBStatus,
)
from .errors import USBIPLocalProtocolError, USBIPRemoteProtocolError
from .events import (
    DevlistRequested,
    ImportRequested,
    PortReset,
    UnlinkRequested,
    URBRefused,
    URBSubmitted,
    USBIPServerEvent,
)
from .messages import (
    CmdSubmit,
    CmdUnlink,
    ExportedDevice,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    Request,
    RetSubmit,
    RetUnlink,
    USBIPMessage,
)

#: URBs one connection may have pending. Linux vhci keeps a handful per device (libccid: one
#: bulk IN, one interrupt IN, one bulk OUT); the bound stops a peer from queueing unboundedly.
DEFAULT_MAX_PENDING_URBS: Final = 64
#: URBs refused for ``max_pending_urbs`` before the connection is closed. A legitimate importer
#: never meets the pending limit (vhci forwards what its class driver submits, and libccid keeps
#: at most three URBs plus a control one in flight), so a handful of refusals is a bug or a flood.
DEFAULT_MAX_REFUSED_URBS: Final = 16
#: Requests one :meth:`USBIPServerConnection.receive_data` call handles. An importer sends one to
#: three per round trip; a 64 KiB read of bare CMD_SUBMIT headers holds 1,365.
DEFAULT_MAX_REQUESTS: Final = 32


class USBIPServerState(enum.Enum):
    """Where a :class:`USBIPServerConnection` is (see the module's table)."""

    OP = "op"
    SEND_DEVLIST = "send_devlist"
    DECIDE_IMPORT = "decide_import"
    URB = "urb"
    CLOSED = "closed"


def is_port_reset(submit: CmdSubmit) -> bool:
    """usbip-win2's device reset: hub-class SET_FEATURE(PORT_RESET) on ep0."""
    setup = submit.setup
    return (
        submit.ep == 0
        and setup[0] == USB_RT_PORT
        and setup[1] == USB_REQ_SET_FEATURE
        and int.from_bytes(setup[2:4], "little") == USB_PORT_FEAT_RESET
    )


class USBIPServerConnection:
    """One importer's connection, seen from the exporter. Bytes in, events and bytes out."""

    def __init__(
        self,
        *,
        max_pending_urbs: int = DEFAULT_MAX_PENDING_URBS,
        max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
        max_refused_urbs: int = DEFAULT_MAX_REFUSED_URBS,
        max_requests: int = DEFAULT_MAX_REQUESTS,
    ) -> None:
        if max_pending_urbs < 1:
            raise ValueError(f"max_pending_urbs={max_pending_urbs} must be at least 1")
        if max_refused_urbs < 0:
            raise ValueError(f"max_refused_urbs={max_refused_urbs} must not be negative")
        if max_requests < 1:
            raise ValueError(f"max_requests={max_requests} must be at least 1")
        self._decoder = RequestDecoder(max_transfer_length=max_transfer_length)
        self._max_pending = max_pending_urbs
        self._max_refused = max_refused_urbs
        self._max_requests = max_requests
        self._refused = 0
        self._pending_batch = False
        self._error: USBIPRemoteProtocolError | None = None
        # Bytes a peer may send before the OP decision is made: one maximal URB.
        self._max_early = URB_HEADER_SIZE + max_transfer_length
        self._pending: dict[int, CmdSubmit] = {}
        self._outgoing: list[bytes] = []  # encoded messages, joined once per write
        self._busid: str | None = None
        self.state = USBIPServerState.OP
        self.device: ExportedDevice | None = None
        """The imported device, once :meth:`accept_import` was called."""

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete message received so far."""
        return self._decoder.buffered

    @property
    def pending(self) -> bool:
        """True when the last call stopped at ``max_requests``: ``receive_data(b"")`` handles
        more (vscard's ``HostConnection.pending``)."""
        return self._pending_batch

    @property
    def error(self) -> USBIPRemoteProtocolError | None:
        """The error the importer's bytes caused, or None; once set, :meth:`receive_data`
        raises it (see :meth:`receive_data`)."""
        return self._error

    @property
    def refused(self) -> int:
        """URBs refused so far for ``max_pending_urbs``."""
        return self._refused

    @property
    def pending_urbs(self) -> Mapping[int, CmdSubmit]:
        """URBs submitted and not yet answered, by seqnum (read-only view)."""
        return MappingProxyType(self._pending)

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes queued for the peer (whole messages only)."""
        data = b"".join(self._outgoing)  # one message: no copy
        self._outgoing.clear()
        return data

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[USBIPServerEvent]:
        """Consume bytes from the importer; queue replies and return what to do.

        At most ``max_requests`` requests are handled (see :attr:`pending`); requests after
        OP_REQ_IMPORT wait for :meth:`accept_import`, which returns their events. Malformed
        input, or a request past the ``max_refused_urbs`` budget, is a
        :class:`USBIPRemoteProtocolError`, kept in :attr:`error`. When requests came before it,
        their events are returned (their replies queued) and the connection stays open: act on
        them, write :meth:`data_to_send`, then close. Otherwise the call raises it and the
        connection is ``CLOSED``; so does every later call.
        """
        if self._error is not None:
            self.close()
            raise self._error
        if self.state is USBIPServerState.CLOSED:
            self._pending_batch = False
            return []
        self._decoder.feed(data)  # raises only once failed, when _error is set
        return self._next_batch()

    # -- OP phase -------------------------------------------------------------------------

    def send_devlist(self, devices: Iterable[ExportedDevice]) -> None:
        """Answer OP_REQ_DEVLIST; the exchange is then over (the peer closes)."""
        self._expect(USBIPServerState.SEND_DEVLIST, "send_devlist")
        self._send(OpRepDevlist(tuple(devices)))
        self.state = USBIPServerState.CLOSED

    def accept_import(self, device: ExportedDevice) -> list[USBIPServerEvent]:
        """Answer OP_REQ_IMPORT with ``device``, whose busid must be the one requested.

        Returns the events of the URB requests that arrived with OP_REQ_IMPORT: a batch, with
        errors held or raised, as :meth:`receive_data` returns them.
        """
        self._expect(USBIPServerState.DECIDE_IMPORT, "accept_import")
        if device.busid != self._busid:
            # Both the Linux tool and usbip-win2 reject a reply with another busid.
            raise USBIPLocalProtocolError(
                f"does not answer the request for busid {self._busid!r}",
                field="ExportedDevice.busid",
                value=device.busid,
            )
        self._send(OpRepImport(OpStatus.OK, device.without_interfaces()))
        self.device = device
        self.state = USBIPServerState.URB
        self._decoder.start_urb_phase()
        return self._next_batch()

    def refuse_import(self, status: OpStatus) -> None:
        """Answer OP_REQ_IMPORT with an error (NODEV for an unknown busid, DEV_BUSY if taken)."""
        self._expect(USBIPServerState.DECIDE_IMPORT, "refuse_import")
        if status == OpStatus.OK:
            raise USBIPLocalProtocolError(
                "refuse_import needs an error status", field="status", value=status.name
            )
        self._send(OpRepImport(status))
        self.state = USBIPServerState.CLOSED

    # -- URB phase ------------------------------------------------------------------------

    def complete(
        self, seqnum: int, *, status: int = 0, data: bytes = b"", actual_length: int | None = None
    ) -> bool:
        """Answer pending URB ``seqnum`` with RET_SUBMIT; False if it is no longer pending.

        An IN URB returns ``data``, at most ``transfer_buffer_length`` bytes (more raises
        :class:`ValueError`: vhci would drop the device). An OUT URB returns ``actual_length``,
        the bytes the device accepted (default: all of them). A short IN answer to a URB with
        ``SHORT_NOT_OK`` gets status -121 (EREMOTEIO), as a host controller reports it.
        False means the URB was unlinked, flushed by a port reset, or the connection closed:
        nothing is sent, and its result must be dropped.
        """
        submit = self._pending.get(seqnum)
        if submit is None or self.state is not USBIPServerState.URB:
            return False
        limit = submit.transfer_buffer_length
        if submit.direction == Direction.IN:
            if len(data) > limit or actual_length not in (None, len(data)):
                raise ValueError(
                    f"IN URB seqnum={seqnum} asked for {limit} bytes; got {len(data)} "
                    f"(actual_length={actual_length})"
                )
            actual = len(data)
            short = actual < limit and submit.transfer_flags & TransferFlags.SHORT_NOT_OK
            if status == URBStatus.OK and short:
                status = URBStatus.EREMOTEIO
        else:
            actual = limit if actual_length is None else actual_length
            if data or not 0 <= actual <= limit:
                raise ValueError(
                    f"OUT URB seqnum={seqnum} of {limit} bytes: actual_length={actual}, "
                    f"{len(data)} data bytes"
                )
        del self._pending[seqnum]
        self._send(RetSubmit(seqnum, status, actual, data=data))
        return True

    def close(self) -> tuple[int, ...]:
        """End the connection: nothing more is sent. Returns the seqnums left unanswered."""
        left = tuple(self._pending)
        self._pending.clear()
        self._pending_batch = False
        self.state = USBIPServerState.CLOSED
        return left

    # -- internals ------------------------------------------------------------------------

    def _expect(self, state: USBIPServerState, action: str) -> None:
        if self.state is not state:
            raise USBIPLocalProtocolError(
                f"{action} needs state {state.name}", field="state", value=self.state.name
            )

    def _next_batch(self) -> list[USBIPServerEvent]:
        """Handle buffered requests, at most ``max_requests``, until a decision is awaited."""
        self._pending_batch = False
        events: list[USBIPServerEvent] = []
        decoder = self._decoder
        try:
            for _ in range(self._max_requests):
                if self.state is not USBIPServerState.URB and self.state is not USBIPServerState.OP:
                    break
                request = decoder.next_request()
                if request is None:
                    break
                self._handle(request, events)
            else:
                self._pending_batch = decoder.buffered > 0
            if decoder.buffered > self._max_early and self.state is not USBIPServerState.URB:
                raise USBIPRemoteProtocolError(
                    "bytes sent before the OP reply", field="stream", value=decoder.buffered
                )
        except USBIPRemoteProtocolError as error:
            self._error = error
            self._pending_batch = False
            if events:
                return events
            self.close()
            raise
        return events

    def _send(self, message: USBIPMessage) -> None:
        self._outgoing.append(encode_usbip(message))

    def _handle(self, request: Request, events: list[USBIPServerEvent]) -> None:
        match request:
            case OpReqDevlist() if self.state is USBIPServerState.OP:
                self.state = USBIPServerState.SEND_DEVLIST
                events.append(DevlistRequested())
            case OpReqImport(busid) if self.state is USBIPServerState.OP:
                self._busid = busid
                self.state = USBIPServerState.DECIDE_IMPORT
                events.append(ImportRequested(busid))
            case CmdSubmit():
                self._check_devid("CMD_SUBMIT.devid", request.devid)
                self._submit(request, events)
            case CmdUnlink(seqnum, devid, unlink_seqnum):
                self._check_devid("CMD_UNLINK.devid", devid)
                cancelled = self._pending.pop(unlink_seqnum, None) is not None
                status = URBStatus.ECONNRESET if cancelled else URBStatus.OK
                self._send(RetUnlink(seqnum, status))
                events.append(UnlinkRequested(seqnum, unlink_seqnum, cancelled))
            case _:  # the decoder reads OP requests only in the OP state
                raise AssertionError(f"{request!r} in state {self.state.name}")

    def _check_devid(self, field: str, devid: int) -> None:
        assert self.device is not None
        # The Linux stub drops a connection whose URBs name another device.
        if devid != self.device.devid:
            raise USBIPRemoteProtocolError(
                f"not the imported device (devid 0x{self.device.devid:08X})",
                field=field,
                value=devid,
            )

    def _submit(self, submit: CmdSubmit, events: list[USBIPServerEvent]) -> None:
        seqnum = submit.seqnum
        if seqnum in self._pending:
            raise USBIPRemoteProtocolError(
                "a URB with this seqnum is pending", field="CMD_SUBMIT.seqnum", value=seqnum
            )
        if is_port_reset(submit):
            cancelled = tuple(self._pending)
            for victim in cancelled:
                self._send(RetSubmit(victim, URBStatus.ESHUTDOWN))
            self._pending.clear()
            self._send(RetSubmit(seqnum, URBStatus.OK))
            events.append(PortReset(seqnum, cancelled))
            return
        if len(self._pending) >= self._max_pending:
            self._refused += 1
            if self._refused > self._max_refused:
                raise USBIPRemoteProtocolError(
                    f"URB {self._refused} past max_pending_urbs={self._max_pending} "
                    f"(max_refused_urbs={self._max_refused})",
                    field="CMD_SUBMIT.seqnum",
                    value=seqnum,
                )
            # What a host controller's usb_submit_urb says when it cannot take more.
            self._send(RetSubmit(seqnum, URBStatus.ENOMEM))
            events.append(
                URBRefused(submit, URBStatus.ENOMEM, f"max_pending_urbs={self._max_pending}")
            )
            return
        self._pending[seqnum] = submit
        events.append(URBSubmitted(submit))
