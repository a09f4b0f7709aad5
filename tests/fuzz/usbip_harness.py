"""USB/IP: both decoders in both phases, and both sans-IO connections on one stream.

Control byte: bits 0-4 split the stream (:func:`~tests.fuzz.common.chunks`); bit 5 sets small
limits (64-byte transfers, 2 pending URBs, 4 devices); bits 6-7 say what the reply side reads:
0 URB replies (the client has imported already), 1 an OP_REP_IMPORT and what follows it, 2 an
OP_REP_DEVLIST, 3 URB replies again, and the server refuses imports.

Bugs: any exception but :class:`ccid.usbip.USBIPRemoteProtocolError`; a split stream decoding
differently from the whole one; a decoder that does not stay failed; more bytes buffered than
one message; a message that does not re-encode to itself; a server whose replies our own client
decoder refuses (a RET_SUBMIT for no pending URB, more IN bytes than asked, an answer to an unlinked
URB) or that keeps more URBs than ``max_pending_urbs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from ccid.configuration import ReaderConfiguration
from ccid.descriptors import ReaderDescriptors
from ccid.usb import SetupPacket
from ccid.usbip import (
    CmdSubmit,
    CmdUnlink,
    DevlistRequested,
    Direction,
    ExportedDevice,
    ImportAccepted,
    ImportRequested,
    OpCode,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    OpStatus,
    PortReset,
    RetSubmit,
    RetUnlink,
    UnlinkRequested,
    URBRefused,
    URBStatus,
    URBSubmitted,
    USBIPClientConnection,
    USBIPRemoteProtocolError,
    USBIPServerConnection,
    USBIPServerEvent,
    USBIPServerState,
    encode_usbip,
)
from ccid.usbip.codec import (
    DEFAULT_MAX_DEVICES,
    DEFAULT_MAX_TRANSFER_LENGTH,
    Phase,
    ReplyDecoder,
    RequestDecoder,
)
from ccid.usbip.constants import (
    OP_COMMON_SIZE,
    URB_HEADER_SIZE,
    USB_DEVICE_SIZE,
    USB_INTERFACE_SIZE,
)
from ccid.usbip.messages import Reply, Request

from .common import FuzzBug, check, chunks, split_input

MAX_LEN: Final = 4096
BUSID: Final = "1-1"
_SUMMARY: Final = ReaderDescriptors.from_configuration(ReaderConfiguration(serial="FUZZ")).summary
DEVICE: Final = ExportedDevice.from_summary(
    _SUMMARY, busid=BUSID, busnum=1, devnum=2, path="/vscard/usb1/1-1"
)
DEVID: Final = DEVICE.devid
GET_DEVICE_DESCRIPTOR: Final = SetupPacket(0x80, 6, 0x0100, 0, 18)
PORT_RESET: Final = SetupPacket(0x23, 3, 4, 1, 0)


URB_REPLIES, IMPORT_REPLY, DEVLIST_REPLY = 0, 1, 2


def _reply_mode(control: int) -> int:
    mode = control >> 6 & 0x3
    return URB_REPLIES if mode == 3 else mode


def _limits(control: int) -> tuple[int, int, int]:
    """max_transfer_length, max_pending_urbs, max_devices."""
    if control & 0x20:
        return 64, 2, 4
    return DEFAULT_MAX_TRANSFER_LENGTH, 8, DEFAULT_MAX_DEVICES


def _synthetic_submit(seqnum: int) -> CmdSubmit | None:
    """The URB a bare ReplyDecoder pretends is pending under ``seqnum`` (or none)."""
    kind = seqnum % 4
    if kind == 0:
        return None
    if kind == 1:
        return CmdSubmit(seqnum, DEVID, Direction.IN, 2, transfer_buffer_length=64)
    if kind == 2:
        return CmdSubmit(seqnum, DEVID, Direction.OUT, 3, transfer_buffer_length=2, data=b"\0\0")
    return CmdSubmit(seqnum, DEVID, Direction.IN, 0, transfer_buffer_length=seqnum * 37 % 1024)


# -- bare decoders ------------------------------------------------------------------------------


def _requests(
    pieces: Iterable[bytes], phase: Phase, max_transfer: int
) -> tuple[list[tuple[Request, int]], str | None]:
    decoder = RequestDecoder(max_transfer_length=max_transfer)
    if phase is Phase.URB:
        decoder.start_urb_phase()
    bound = URB_HEADER_SIZE + max_transfer if phase is Phase.URB else OP_COMMON_SIZE + 32
    out: list[tuple[Request, int]] = []
    try:
        for piece in pieces:
            decoder.feed(piece)
            while True:
                before = decoder.buffered
                request = decoder.next_request()
                if request is None:
                    break
                out.append((request, before - decoder.buffered))
            check(decoder.buffered < bound, f"{decoder.buffered} bytes buffered")
    except USBIPRemoteProtocolError as error:
        try:
            decoder.next_request()
        except USBIPRemoteProtocolError as again:
            check(again is error, "a failed decoder raised another error")
        else:
            raise FuzzBug("a failed RequestDecoder returned a request") from None
        return out, f"{error.field}={error.value!r}"
    return out, None


def _check_requests(control: int, payload: bytes, phase: Phase) -> None:
    max_transfer = _limits(control)[0]
    whole, whole_error = _requests([payload], phase, max_transfer)
    split, split_error = _requests(chunks(control, payload), phase, max_transfer)
    check(split == whole, f"a split stream decoded differently in phase {phase.name}")
    check(split_error == whole_error, f"split: {split_error}, whole: {whole_error}")
    offset = 0
    for request, size in whole:
        wire = encode_usbip(request)
        if isinstance(request, CmdSubmit):
            check(wire == payload[offset : offset + size], f"{request!r} re-encodes differently")
        again, error = _requests([wire], phase, max_transfer)
        check(error is None and [m for m, _ in again] == [request], f"{request!r} no round trip")
        offset += size


def _replies(pieces: Iterable[bytes], control: int, mode: int) -> tuple[list[Reply], str | None]:
    max_transfer, _, max_devices = _limits(control)
    decoder = ReplyDecoder(
        _synthetic_submit, max_transfer_length=max_transfer, max_devices=max_devices
    )
    if mode == URB_REPLIES:
        decoder.phase = Phase.URB
    else:
        decoder.expect(OpCode.OP_REP_DEVLIST if mode == DEVLIST_REPLY else OpCode.OP_REP_IMPORT)
    device_bound = USB_DEVICE_SIZE + 255 * USB_INTERFACE_SIZE
    out: list[Reply] = []
    try:
        for piece in pieces:
            decoder.feed(piece)
            while (reply := decoder.next_reply()) is not None:
                out.append(reply)
            bound = (
                URB_HEADER_SIZE + max_transfer
                if decoder.phase is Phase.URB
                else OP_COMMON_SIZE + 4 + max_devices * device_bound
            )
            check(decoder.buffered < bound, f"{decoder.buffered} bytes buffered")
    except USBIPRemoteProtocolError as error:
        try:
            decoder.next_reply()
        except USBIPRemoteProtocolError as again:
            check(again is error, "a failed decoder raised another error")
        else:
            raise FuzzBug("a failed ReplyDecoder returned a reply") from None
        # "Bytes nobody asked for" shows what happened to be buffered: only its field is stable.
        value = "" if error.field == "op_common" else repr(error.value)
        return out, f"{error.field}={value}"
    return out, None


def _check_replies(control: int, payload: bytes) -> None:
    mode = _reply_mode(control)
    whole, whole_error = _replies([payload], control, mode)
    split, split_error = _replies(chunks(control, payload), control, mode)
    check(split == whole, "a split reply stream decoded differently")
    check(split_error == whole_error, f"split: {split_error}, whole: {whole_error}")
    for reply in whole:
        if isinstance(reply, OpRepImport):
            mode = IMPORT_REPLY
        elif isinstance(reply, OpRepDevlist):
            mode = DEVLIST_REPLY
        else:
            mode = URB_REPLIES
        again, error = _replies([encode_usbip(reply)], control, mode)
        check(error is None and again == [reply], f"{reply!r} does not decode back to itself")


# -- connections --------------------------------------------------------------------------------


class _ServerPeer:
    """What the importer sees of a server: its replies, decoded by our client's decoder."""

    def __init__(self, max_transfer: int) -> None:
        # A seqnum may come back once its URB is answered (a client's counter wraps; usbip-win2
        # port resets are answered at once), so each seqnum keeps its unanswered URBs in order.
        self.known: dict[int, list[CmdSubmit]] = {}
        self.decoder = ReplyDecoder(self._submitted, max_transfer_length=max_transfer)

    def submitted(self, submit: CmdSubmit) -> None:
        self.known.setdefault(submit.seqnum, []).append(submit)

    def unlinked(self, seqnum: int) -> None:
        waiting = self.known.get(seqnum)
        if waiting:
            waiting.pop()
            if not waiting:
                del self.known[seqnum]

    def _submitted(self, seqnum: int) -> CmdSubmit | None:
        # Each RET_SUBMIT arrives whole, so this runs once per reply: an answer to a URB that
        # was already answered finds nothing.
        waiting = self.known.get(seqnum)
        if not waiting:
            return None
        submit = waiting.pop(0)
        if not waiting:
            del self.known[seqnum]
        return submit

    def receive(self, wire: bytes) -> None:
        self.decoder.feed(wire)
        try:
            while self.decoder.next_reply() is not None:
                pass
        except USBIPRemoteProtocolError as error:
            raise FuzzBug(f"the server sent what its client refuses: {error}") from error
        check(self.decoder.buffered == 0, "the server sent a partial message")


def _receive(
    server: USBIPServerConnection, data: bytes, *, accept: ExportedDevice | None = None
) -> list[USBIPServerEvent] | None:
    """The server's events for ``data`` (or for the requests that came with the import it
    ``accept``-s), or None when the bytes broke the protocol (and closed it)."""
    try:
        if accept is not None:
            return server.accept_import(accept)
        return server.receive_data(data)
    except USBIPRemoteProtocolError:
        check(
            server.state is USBIPServerState.CLOSED,
            "a USBIPRemoteProtocolError left the connection open",
        )
        check(not server.pending_urbs, "a closed connection kept URBs")
        return None


def _check_server(control: int, payload: bytes) -> None:
    max_transfer, max_pending, _ = _limits(control)
    server = USBIPServerConnection(max_pending_urbs=max_pending, max_transfer_length=max_transfer)
    # The server's limit is on what it reads; the client reading its IN data has its own.
    peer = _ServerPeer(DEFAULT_MAX_TRANSFER_LENGTH)
    for piece in chunks(control, payload):
        events = _receive(server, piece)
        if events is None:
            return
        for event in events:
            if isinstance(event, DevlistRequested):
                peer.decoder.expect(OpCode.OP_REP_DEVLIST)
                server.send_devlist([DEVICE])
            elif isinstance(event, ImportRequested):
                peer.decoder.expect(OpCode.OP_REP_IMPORT)
                if control >> 6 == 3:
                    server.refuse_import(OpStatus.NODEV)
                else:
                    device = ExportedDevice.from_summary(
                        _SUMMARY, busid=event.busid, busnum=1, devnum=2, path="/fuzz"
                    )
                    # URBs that came with the import request: handled by this same loop.
                    more = _receive(server, b"", accept=device)
                    if more is None:
                        return
                    events += more
            elif isinstance(event, URBSubmitted | URBRefused):
                peer.submitted(event.submit)
            elif isinstance(event, UnlinkRequested) and event.cancelled:
                peer.unlinked(event.unlink_seqnum)
            elif isinstance(event, PortReset):
                peer.submitted(CmdSubmit(event.seqnum, DEVID, Direction.OUT, 0))
        for seqnum, submit in list(server.pending_urbs.items()):
            if (seqnum + control) % 3:
                if submit.direction == Direction.IN:
                    size = min(submit.transfer_buffer_length, seqnum % 80)
                    server.complete(seqnum, data=bytes(size))
                else:
                    server.complete(seqnum, status=URBStatus.EPIPE if seqnum % 5 == 0 else 0)
        check(len(server.pending_urbs) <= max_pending, f"{len(server.pending_urbs)} URBs pending")
        if server.error is not None:  # good requests, then a bad one: the adapter closes
            peer.receive(server.data_to_send())
            return
        buffered = server.buffered
        check(buffered <= URB_HEADER_SIZE + max_transfer, f"{buffered} bytes buffered")
        peer.receive(server.data_to_send())


def _check_client(control: int, payload: bytes) -> None:
    max_transfer, _, max_devices = _limits(control)
    client = USBIPClientConnection(max_transfer_length=max_transfer, max_devices=max_devices)
    mode = _reply_mode(control)
    if mode == DEVLIST_REPLY:
        client.request_devlist()
    elif mode == IMPORT_REPLY:
        client.request_import(BUSID)
    else:
        client.request_import(BUSID)
        client.receive_data(encode_usbip(OpRepImport(OpStatus.OK, DEVICE.without_interfaces())))
        client.submit(0, Direction.IN, length=18, setup=GET_DEVICE_DESCRIPTOR)  # seqnum 1
        client.submit(3, Direction.OUT, data=b"\x65" + bytes(9))  # seqnum 2
        client.submit(2, Direction.IN, length=64)  # seqnum 3
        client.unlink(3)  # seqnum 4
    submitted = len(client.pending_urbs)
    for piece in chunks(control, payload):
        try:
            events = client.receive_data(piece)
        except USBIPRemoteProtocolError:
            return
        for event in events:
            if isinstance(event, ImportAccepted):
                check(event.device.busid == BUSID, "imported another busid")
                client.submit(2, Direction.IN, length=64)
                submitted += 1
        check(len(client.pending_urbs) <= submitted, "pending URBs the client never submitted")
        client.data_to_send()


def fuzz_one(data: bytes) -> None:
    """Feed ``data`` to every USB/IP decoder and both connections."""
    control, payload = split_input(data)
    _check_requests(control, payload, Phase.OP)
    _check_requests(control, payload, Phase.URB)
    _check_replies(control, payload)
    _check_server(control, payload)
    _check_client(control, payload)


def seeds() -> dict[str, bytes]:
    """An importer's session (as the server reads it) and an exporter's (as the client does)."""
    descriptor_in = CmdSubmit(
        1, DEVID, Direction.IN, 0, transfer_buffer_length=18, setup=GET_DEVICE_DESCRIPTOR.to_bytes()
    )
    ccid_command = bytes.fromhex("65 00000000 00 01 00 00 00")
    urbs: list[Request] = [
        descriptor_in,
        CmdSubmit(2, DEVID, Direction.OUT, 3, transfer_buffer_length=10, data=ccid_command),
        CmdSubmit(3, DEVID, Direction.IN, 2, transfer_buffer_length=65_564),
        CmdSubmit(4, DEVID, Direction.IN, 1, transfer_buffer_length=8),
        CmdUnlink(5, DEVID, 3),
        CmdSubmit(6, DEVID, Direction.OUT, 0, setup=PORT_RESET.to_bytes(), number_of_packets=-1),
    ]
    urb_stream = b"".join(encode_usbip(message) for message in urbs)
    rdr_to_pc = bytes.fromhex("81 00000000 00 01 00 00 00")
    replies: list[Reply] = [
        RetSubmit(1, actual_length=18, data=bytes(18)),
        RetSubmit(2, actual_length=10),
        RetSubmit(3, actual_length=10, data=rdr_to_pc),
        RetUnlink(4, URBStatus.ECONNRESET),
        RetSubmit(5, actual_length=10, data=rdr_to_pc),
    ]
    reply_stream = b"".join(encode_usbip(message) for message in replies)
    return {
        "import-then-urbs": b"\x00" + encode_usbip(OpReqImport(BUSID)) + urb_stream,
        "import-then-urbs-split": b"\x14" + encode_usbip(OpReqImport(BUSID)) + urb_stream,
        "devlist-request": b"\x00" + encode_usbip(OpReqDevlist()),
        "refused-import": b"\xc0" + encode_usbip(OpReqImport("9-9")),
        "urb-replies": b"\x00" + reply_stream,
        "import-reply": b"\x40"
        + encode_usbip(OpRepImport(OpStatus.OK, DEVICE.without_interfaces()))
        + reply_stream,
        "devlist-reply": b"\x80" + encode_usbip(OpRepDevlist((DEVICE,))),
        # Regression: a path filling its 256 bytes raised ValueError, not USBIPRemoteProtocolError.
        "regression-path-without-nul": b"\x40"
        + encode_usbip(OpRepImport(OpStatus.OK, DEVICE.without_interfaces())).replace(
            b"/vscard/usb1/1-1".ljust(256, b"\x00"), b"/" * 256
        ),
        "small-limits": b"\x20" + encode_usbip(OpReqImport(BUSID)) + urb_stream,
    }
