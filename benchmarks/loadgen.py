"""Cheap load generators for ``bench_scale``: both ends of a real ``ccid-passthru``, raw protocols.

The scale benchmark measures one ``ccid-passthru`` process, so the processes that load it must
cost as little CPU per APDU as possible or they, not the passthru, set the rate on a small
machine. Both generators here are plain :class:`asyncio.Protocol` subclasses: no task, future,
``StreamReader`` or message object per APDU. Each connection is set up with the repository's
sans-IO cores (so the handshakes are the real ones), then switches to a steady state that
answers from precomputed bytes and parses only the fixed headers. They still speak the real
protocols over TCP and check what they read: a wrong type, reader id, seqnum, status or status
word closes the connection and fails the run.

- :class:`CardProtocol`: one VSCard connection, as a client (vscclient's side): Init,
  ReaderAdd, ATR through :class:`vscard.ClientConnection`, then every APDU frame is answered
  with one precomputed ``90 00`` response frame for that reader.
- :class:`UsbipProtocol`: one imported USB/IP device, as the importer (vhci's side): the import,
  SET_CONFIGURATION and IccPowerOn through :class:`ccid.usbip.USBIPClientConnection`, then a closed
  loop per reader: CMD_SUBMIT bulk OUT with an XfrBlock, on its RET_SUBMIT a CMD_SUBMIT bulk IN
  for 65,556 bytes, on that RET_SUBMIT the DataBlock (a time extension means: submit the IN
  again), the latency recorded, and the next XfrBlock. Seqnums and bSeq count up, packed into
  preallocated messages.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from array import array
from typing import Final, cast

import vscard
from ccid.codec import decode_response
from ccid.codec import encode as ccid_encode
from ccid.descriptors import BULK_IN, BULK_OUT
from ccid.messages import PC_to_RDR_IccPowerOn, PC_to_RDR_XfrBlock, RDR_to_PC_DataBlock
from ccid.usb import SetupPacket
from ccid.usbip.client_connection import USBIPClientConnection
from ccid.usbip.constants import URB_HEADER_SIZE, Direction
from ccid.usbip.events import ImportAccepted, ImportRefused, URBCompleted

#: The card's answer to every APDU.
SW_OK: Final = b"\x90\x00"
#: What a host asks of a bulk IN (libccid's buffer: the largest extended APDU response).
XFR_BUFFER: Final = 65556

_VSC_HEADER: Final = struct.Struct(">III")
_VSC_APDU: Final = int(vscard.MessageType.APDU)
_CMD_SUBMIT: Final = struct.Struct(">IIIIIIiiii8s")
#: command, seqnum, devid, direction, ep, status, actual_length (of RET_SUBMIT's 48 bytes).
_RET_SUBMIT_HEAD: Final = struct.Struct(">IIIIIii")
_U32: Final = struct.Struct(">I")
_RET_SUBMIT: Final = 3
_CCID_HEADER: Final = 10
_DATA_BLOCK: Final = 0x80
_perf_counter_ns: Final = time.perf_counter_ns


class LoadError(Exception):
    """A peer answered something a real host or importer would refuse."""


# -- the card side ---------------------------------------------------------------------------


class CardProtocol(asyncio.Protocol):
    """One VSCard connection with one reader and a card that answers ``90 00`` to every APDU.

    ``ready`` resolves once the host accepted the reader and the card (or fails with the reason).
    """

    def __init__(self, atr: bytes, name: str = "scale") -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.apdus = 0
        self._atr = atr
        self._name = name
        self._conn: vscard.ClientConnection | None = vscard.ClientConnection()
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._reader_id = -1
        self._response = b""
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        assert self._conn is not None
        self._conn.send_init()
        self._conn.add_reader(self._name)
        transport.write(self._conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LoadError(f"the host closed the VSCard connection ({exc!r})"))

    def close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._setup_received(data)
            return
        buffer = self._buffer
        if buffer:
            buffer += data
            frames: bytes | bytearray = buffer
        else:
            frames = data
        size = len(frames)
        offset = 0
        answers = 0
        while size - offset >= 12:
            kind, reader_id, length = _VSC_HEADER.unpack_from(frames, offset)
            end = offset + 12 + length
            if end > size:
                break
            if kind != _VSC_APDU or reader_id != self._reader_id:
                self._fail(LoadError(f"unexpected VSCard frame type {kind} reader {reader_id}"))
                return
            answers += 1
            offset = end
        if offset == size:
            buffer.clear()
        elif buffer:
            del buffer[:offset]
        else:
            buffer += frames[offset:]
        if answers:
            assert self._transport is not None
            self._transport.write(self._response if answers == 1 else self._response * answers)
            self.apdus += answers

    def _setup_received(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        assert self._transport is not None
        for event in conn.receive_data(data):
            if isinstance(event, vscard.RequestAnswered):
                if event.code != vscard.ErrorCode.SUCCESS:
                    self._fail(LoadError(f"{event.request!r} refused with {event.code}"))
                    return
                if isinstance(event.request, vscard.ReaderAdd):
                    self._reader_id = event.reader_id
                    conn.insert_card(event.reader_id, self._atr)
                elif isinstance(event.request, vscard.ATR):
                    # Set up: from now on only APDU frames come, answered from these bytes.
                    self._response = vscard.encode(vscard.APDU(self._reader_id, SW_OK))
                    self._conn = None
                    if not self.ready.done():
                        self.ready.set_result(None)
            elif isinstance(event, vscard.APDURequest):
                conn.send_response(event.reader_id, SW_OK)
            elif not isinstance(event, vscard.PeerInit):
                self._fail(LoadError(f"unexpected {event!r} while setting up"))
                return
        if pending := conn.data_to_send():
            self._transport.write(pending)

    def _fail(self, error: Exception) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
        elif not self._closing:  # under load: the other side's failure names the reader too
            print(f"card connection failed: {error}", file=sys.stderr, flush=True)
        self.close()


async def open_cards(port: int, count: int, atr: bytes, *, batch: int = 100) -> list[CardProtocol]:
    """``count`` VSCard connections to ``127.0.0.1:port``, each with its reader and card."""
    loop = asyncio.get_running_loop()
    cards: list[CardProtocol] = []

    async def one() -> CardProtocol:
        _, card = await loop.create_connection(lambda: CardProtocol(atr), "127.0.0.1", port)
        await card.ready
        return card

    for start in range(0, count, batch):
        cards += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return cards


# -- the USB/IP side -------------------------------------------------------------------------


class Recorder:
    """What every reader of one process shares: the run's phase and the latencies (ns) of the
    APDUs completed while ``recording``, in a preallocated array."""

    def __init__(self, readers: int, capacity: int) -> None:
        self.readers = readers
        self.latencies = array("q", bytes(8 * capacity))
        self.count = 0
        self.time_extensions = 0
        self.recording = False
        self.stopping = False
        self.idle = 0
        self.stopped: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.error: BaseException | None = None

    def record(self, latency: int) -> None:
        count = self.count
        if count < len(self.latencies):
            self.latencies[count] = latency
        else:
            self.latencies.append(latency)
        self.count = count + 1

    def reader_stopped(self) -> None:
        self.idle += 1
        if self.idle >= self.readers and not self.stopped.done():
            self.stopped.set_result(None)

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        if not self.stopped.done():
            self.stopped.set_exception(error)

    def recorded(self) -> array[int]:
        return self.latencies[: self.count]


class UsbipProtocol(asyncio.Protocol):
    """One imported CCID reader keeping one XfrBlock in flight (see the module docstring).

    ``ready`` resolves once the device is imported, configured and its card powered on;
    :meth:`start` then begins the closed loop, which reports to ``recorder``.
    """

    def __init__(self, busid: str, apdu: bytes, recorder: Recorder) -> None:
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._recorder = recorder
        self._apdu = apdu
        self._conn: USBIPClientConnection | None = USBIPClientConnection()
        self._conn.request_import(busid)
        self._transport: asyncio.Transport | None = None
        self._setup_step = 0
        self._buffer = bytearray()
        self._seqnum = 0
        self._bseq = 0
        self._in_flight_in = False  # the URB in flight is the bulk IN (else the bulk OUT)
        self._began = 0
        self._out = bytearray()
        self._in = bytearray()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)  # uvloop's is not one
        assert self._conn is not None
        transport.write(self._conn.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._recorder.stopping or not self.ready.done():
            self._fail(LoadError(f"the server closed the USB/IP connection ({exc!r})"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._conn is not None:
            self._setup_received(data)
            return
        buffer = self._buffer
        if buffer:
            buffer += data
            message: bytes | bytearray = buffer
        else:
            message = data
        size = len(message)
        if size < URB_HEADER_SIZE:
            if not buffer:
                buffer += data
            return
        command, seqnum, _, _, _, status, actual_length = _RET_SUBMIT_HEAD.unpack_from(message)
        if command != _RET_SUBMIT or seqnum != self._seqnum or status != 0:
            self._fail(LoadError(f"RET_SUBMIT {command} seqnum {seqnum} status {status}"))
            return
        if self._in_flight_in:
            end = URB_HEADER_SIZE + actual_length
            if size < end:
                if not buffer:
                    buffer += data
                return
            # The DataBlock: type, dwLength, bSlot, bSeq, bStatus, bError, bChain, data.
            if (
                actual_length < _CCID_HEADER
                or message[URB_HEADER_SIZE] != _DATA_BLOCK
                or message[URB_HEADER_SIZE + 6] != self._bseq
            ):
                self._fail(LoadError(f"not the DataBlock answering bSeq {self._bseq}"))
                return
            ccid_status = message[URB_HEADER_SIZE + 7]
            if ccid_status & 0x80:  # a time extension: the answer comes in a later IN
                self._recorder.time_extensions += 1
                self._submit_in()
            elif (
                ccid_status
                or actual_length < _CCID_HEADER + 2
                or message[end - 2] != 0x90
                or message[end - 1] != 0
            ):
                self._fail(LoadError(f"DataBlock bStatus {ccid_status:#x}, not 90 00"))
                return
            else:
                now = _perf_counter_ns()
                recorder = self._recorder
                if recorder.recording:
                    recorder.record(now - self._began)
                if recorder.stopping:
                    self._in_flight_in = False
                    recorder.reader_stopped()
                else:
                    self._began = now
                    self._submit_out()
        else:
            end = URB_HEADER_SIZE
            self._submit_in()
        if size != end:
            self._fail(LoadError(f"{size - end} bytes after the only RET_SUBMIT in flight"))
            return
        if buffer:
            buffer.clear()

    # -- the closed loop ------------------------------------------------------------------

    def start(self) -> None:
        """Submit the first XfrBlock (once ``ready``)."""
        self._began = _perf_counter_ns()
        self._submit_out()

    def _submit_out(self) -> None:
        self._seqnum = seqnum = (self._seqnum + 1) & 0xFFFFFFFF
        self._bseq = bseq = (self._bseq + 1) & 0xFF
        out = self._out
        _U32.pack_into(out, 4, seqnum)
        out[URB_HEADER_SIZE + 6] = bseq
        self._in_flight_in = False
        assert self._transport is not None
        self._transport.write(out)

    def _submit_in(self) -> None:
        self._seqnum = seqnum = (self._seqnum + 1) & 0xFFFFFFFF
        _U32.pack_into(self._in, 4, seqnum)
        self._in_flight_in = True
        assert self._transport is not None
        self._transport.write(self._in)

    # -- setup through the sans-IO client -------------------------------------------------

    def _setup_received(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        assert self._transport is not None
        try:
            events = conn.receive_data(data)
        except Exception as exc:
            self._fail(exc)
            return
        for event in events:
            if isinstance(event, ImportRefused):
                self._fail(LoadError(f"import of {event.busid} refused: status {event.status}"))
                return
            if isinstance(event, ImportAccepted):
                # SET_CONFIGURATION(1), as the kernel does before a driver binds.
                conn.submit(0, Direction.OUT, setup=SetupPacket(0x00, 9, 1, 0, 0))
            elif isinstance(event, URBCompleted):
                if event.ret.status != 0:
                    self._fail(LoadError(f"setup URB failed with status {event.ret.status}"))
                    return
                self._setup_step += 1
                if self._setup_step == 1:
                    power_on = ccid_encode(PC_to_RDR_IccPowerOn(0, 0))
                    conn.submit(BULK_OUT & 0x7F, Direction.OUT, data=power_on)
                elif event.submit.direction == Direction.OUT:
                    conn.submit(BULK_IN & 0x7F, Direction.IN, length=XFR_BUFFER)
                else:
                    answer = decode_response(event.ret.data)
                    if not isinstance(answer, RDR_to_PC_DataBlock) or answer.bStatus & 0x40:
                        self._fail(LoadError(f"IccPowerOn answered {answer!r}"))
                        return
                    if answer.bStatus & 0x80:
                        conn.submit(BULK_IN & 0x7F, Direction.IN, length=XFR_BUFFER)
                    else:
                        self._enter_steady_state(conn, event.submit.seqnum)
                        return
            else:
                self._fail(LoadError(f"unexpected {event!r} while setting up"))
                return
        if pending := conn.data_to_send():
            self._transport.write(pending)

    def _enter_steady_state(self, conn: USBIPClientConnection, last_seqnum: int) -> None:
        assert conn.device is not None
        assert not conn.pending_urbs
        devid = conn.device.devid
        xfr = ccid_encode(PC_to_RDR_XfrBlock(0, 0, self._apdu))
        self._out = bytearray(
            _CMD_SUBMIT.pack(1, 0, devid, Direction.OUT, BULK_OUT & 0x7F, 0, len(xfr), 0, 0, 0,
                             bytes(8)) + xfr
        )  # fmt: skip
        self._in = bytearray(
            _CMD_SUBMIT.pack(1, 0, devid, Direction.IN, BULK_IN & 0x7F, 0, XFR_BUFFER, 0, 0, 0,
                             bytes(8))
        )  # fmt: skip
        self._seqnum = last_seqnum
        self._conn = None
        self.ready.set_result(None)

    def _fail(self, error: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)
        else:
            self._recorder.fail(error)
        self.close()


async def open_readers(
    port: int, busids: list[str], apdu: bytes, recorder: Recorder, *, batch: int = 100
) -> list[UsbipProtocol]:
    """Import every device in ``busids`` from ``127.0.0.1:port`` and power its card on."""
    loop = asyncio.get_running_loop()
    readers: list[UsbipProtocol] = []

    async def one(busid: str) -> UsbipProtocol:
        _, reader = await loop.create_connection(
            lambda: UsbipProtocol(busid, apdu, recorder), "127.0.0.1", port
        )
        await reader.ready
        return reader

    for start in range(0, len(busids), batch):
        readers += await asyncio.gather(*(one(b) for b in busids[start : start + batch]))
    return readers
