"""asyncio USB/IP client for tests and tools: list, import, transfers, unlink.

It plays the part of ``usbip attach`` and vhci together, with vhci's checks (see
:mod:`ccid.usbip.client_connection`), so a test sees exactly what a Linux importer would
refuse. Endpoints are USB endpoint addresses, as in :class:`~ccid.usb.UsbDevice`: ``0x82``
for bulk IN 2, ``0x03`` for bulk OUT 3.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import TypeVar

from cardfloor.log import get_logger

from ..usb import SetupPacket
from .client_connection import USBIPClientConnection, USBIPClientState
from .codec import DEFAULT_MAX_TRANSFER_LENGTH
from .constants import MAX_ENDPOINT, USBIP_PORT, Direction, OpStatus, URBStatus
from .errors import (
    ImportRefusedError,
    URBError,
    USBIPConnectionClosedError,
    USBIPError,
    USBIPRemoteProtocolError,
)
from .events import (
    DevlistReceived,
    ImportAccepted,
    ImportRefused,
    UnlinkAnswered,
    URBCompleted,
    URBUnlinked,
    USBIPClientEvent,
)
from .messages import ExportedDevice, RetSubmit
from .stream import READ_SIZE, peer_name, set_nodelay

log = get_logger("ccid.usbip")

_T = TypeVar("_T")


class URB:
    """A submitted URB: its seqnum, and its answer once it comes."""

    def __init__(self, seqnum: int, future: asyncio.Future[RetSubmit]) -> None:
        self.seqnum = seqnum
        self._future = future

    def done(self) -> bool:
        """True once answered, unlinked, or failed with the connection."""
        return self._future.done()

    async def result(self) -> RetSubmit:
        """Wait for the RET_SUBMIT (whatever its status).

        Raises :class:`URBError` when an unlink ended the URB first, and
        :class:`USBIPConnectionClosedError` when the connection ended first (its ``__cause__`` is
        the :class:`USBIPRemoteProtocolError` or :class:`OSError` that ended it, if any).
        """
        return await asyncio.shield(self._future)


class USBIPClient:
    """An imported device. Create it with :func:`import_device`."""

    def __init__(
        self,
        stream_reader: asyncio.StreamReader,
        stream_writer: asyncio.StreamWriter,
        conn: USBIPClientConnection,
    ) -> None:
        assert conn.device is not None
        self.device: ExportedDevice = conn.device
        """The server's record of the device (from OP_REP_IMPORT)."""
        self._reader = stream_reader
        self._writer = stream_writer
        self._conn = conn
        self._urbs: dict[int, asyncio.Future[RetSubmit]] = {}
        self._unlinks: dict[int, asyncio.Future[int]] = {}
        self._closed = asyncio.Event()
        self.error: BaseException | None = None
        """Why the connection ended, when the server broke the protocol or the socket failed."""
        self.peer = peer_name(stream_writer)
        self._log = log.bind(peer=self.peer, busid=self.device.busid)
        self._read_task = asyncio.create_task(self._read_loop(), name="usbip-client-read")

    @property
    def closed(self) -> bool:
        """True once the connection is gone."""
        return self._closed.is_set()

    # -- URBs -----------------------------------------------------------------------------

    def submit_in(self, endpoint: int, length: int, *, transfer_flags: int = 0) -> URB:
        """Submit an IN URB for ``length`` bytes (bulk or interrupt: the wire does not differ)."""
        return self._submit(_ep(endpoint), Direction.IN, length=length, flags=transfer_flags)

    def submit_out(self, endpoint: int, data: bytes, *, transfer_flags: int = 0) -> URB:
        """Submit an OUT URB carrying ``data``."""
        return self._submit(_ep(endpoint), Direction.OUT, data=data, flags=transfer_flags)

    def submit_control(self, setup: SetupPacket, data: bytes = b"") -> URB:
        """Submit a control URB on ep0; an OUT request sends ``data`` (wLength bytes)."""
        direction = Direction.IN if setup.is_in else Direction.OUT
        if direction == Direction.OUT and len(data) != setup.wLength:
            raise ValueError(f"wLength={setup.wLength} but {len(data)} data bytes")
        return self._submit(0, direction, length=setup.wLength, data=data, setup=setup)

    async def unlink(self, urb: URB | int) -> int:
        """Send CMD_UNLINK for ``urb``; return RET_UNLINK's status (-104 cancelled, 0 too late)."""
        victim = urb.seqnum if isinstance(urb, URB) else urb
        self._check_open()
        seqnum = self._conn.unlink(victim)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._unlinks[seqnum] = future
        self._write()
        return await asyncio.shield(future)

    # -- transfers ------------------------------------------------------------------------

    async def control(self, setup: SetupPacket, data: bytes = b"") -> bytes:
        """Run a control transfer; return the IN data (``b""`` for OUT). STALL: status -32."""
        ret = await self._transfer(self.submit_control(setup, data))
        return ret.data

    async def transfer_in(self, endpoint: int, length: int) -> bytes:
        """Read at most ``length`` bytes from an IN endpoint, waiting until the device has some.

        Cancelling the call unlinks the URB, as libusb does on a timeout.
        """
        return (await self._transfer(self.submit_in(endpoint, length))).data

    async def transfer_out(self, endpoint: int, data: bytes) -> int:
        """Write ``data`` to an OUT endpoint; return the bytes the device accepted."""
        return (await self._transfer(self.submit_out(endpoint, data))).actual_length

    bulk_in = transfer_in
    bulk_out = transfer_out
    interrupt_in = transfer_in
    interrupt_out = transfer_out

    # -- lifetime -------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the connection (the server then detaches the device)."""
        await self._shutdown(None)

    async def wait_closed(self) -> None:
        """Wait until the server closes the connection (or :meth:`close` is called)."""
        await self._closed.wait()

    async def __aenter__(self) -> USBIPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise USBIPConnectionClosedError(f"connection to {self.peer} is closed") from self.error

    def _submit(
        self,
        ep: int,
        direction: Direction,
        *,
        length: int = 0,
        data: bytes = b"",
        flags: int = 0,
        setup: SetupPacket | None = None,
    ) -> URB:
        self._check_open()
        seqnum = self._conn.submit(
            ep, direction, length=length, data=data, setup=setup, transfer_flags=flags
        )
        future: asyncio.Future[RetSubmit] = asyncio.get_running_loop().create_future()
        self._urbs[seqnum] = future
        self._write()
        return URB(seqnum, future)

    async def _transfer(self, urb: URB) -> RetSubmit:
        try:
            ret = await urb.result()
        except asyncio.CancelledError:
            if not urb.done() and not self.closed:
                # Do what libusb does on a timeout; the answer is bookkept, nobody waits.
                self._conn.unlink(urb.seqnum)
                self._write()
            raise
        if ret.status not in (URBStatus.OK, URBStatus.EREMOTEIO):
            raise URBError(ret.seqnum, ret.status)
        return ret

    def _write(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while data := await self._reader.read(READ_SIZE):
                for event in self._conn.receive_data(data):
                    self._dispatch(event)
                if self._conn.error is not None:  # a bad reply after the good ones
                    raise self._conn.error
            self._log.info("usbip.disconnected")
        except USBIPRemoteProtocolError as exc:
            self._log.warning(
                "usbip.protocol_error", field=exc.field, value=repr(exc.value), error=str(exc)
            )
            error = exc
        except OSError as exc:
            self._log.warning("usbip.connection_lost", error=repr(exc))
            error = exc
        await self._shutdown(error, from_reader=True)

    def _dispatch(self, event: USBIPClientEvent) -> None:
        match event:
            case URBCompleted(submit, ret):
                self._log.debug(
                    "usbip.ret_submit",
                    seqnum=ret.seqnum,
                    status=ret.status,
                    actual_length=ret.actual_length,
                )
                _resolve(self._urbs.pop(submit.seqnum, None), ret)
            case URBUnlinked(submit, status):
                _resolve(self._urbs.pop(submit.seqnum, None), URBError(submit.seqnum, status))
            case UnlinkAnswered(seqnum, unlink_seqnum, status):
                self._log.debug(
                    "usbip.ret_unlink", seqnum=seqnum, unlink_seqnum=unlink_seqnum, status=status
                )
                _resolve(self._unlinks.pop(seqnum, None), status)
            case _:
                raise AssertionError(f"{event!r} after the import")

    async def _shutdown(self, error: BaseException | None, *, from_reader: bool = False) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.error = error
        if not from_reader:
            self._read_task.cancel()
        self._conn.close()
        failure = USBIPConnectionClosedError(f"connection to {self.peer} closed")
        failure.__cause__ = error
        for urb in self._urbs.values():
            _resolve(urb, failure)
        for unlink in self._unlinks.values():
            _resolve(unlink, failure)
        self._urbs.clear()
        self._unlinks.clear()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


def _ep(endpoint: int) -> int:
    ep = endpoint & 0x7F
    if not 1 <= ep <= MAX_ENDPOINT:
        raise ValueError(f"endpoint 0x{endpoint:02X} is not a data endpoint (1-15)")
    return ep


def _resolve(future: asyncio.Future[_T] | None, result: _T | BaseException) -> None:
    if future is None or future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
        future.exception()  # mark retrieved: the caller may have been cancelled
    else:
        future.set_result(result)


async def _op_exchange(
    conn: USBIPClientConnection, host: str, port: int, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, USBIPClientEvent]:
    async with asyncio.timeout(timeout):
        stream_reader, stream_writer = await asyncio.open_connection(host, port)
        set_nodelay(stream_writer)
        try:
            stream_writer.write(conn.data_to_send())
            while True:
                data = await stream_reader.read(READ_SIZE)
                if not data:
                    raise USBIPConnectionClosedError(f"{host}:{port} closed before its OP reply")
                events = conn.receive_data(data)
                if events:
                    return stream_reader, stream_writer, events[0]
        except BaseException:
            stream_writer.close()
            raise


async def list_devices(
    host: str = "127.0.0.1", port: int = USBIP_PORT, *, timeout: float = 10.0
) -> tuple[ExportedDevice, ...]:
    """Ask a USB/IP server for its exportable devices (``usbip list -r``)."""
    conn = USBIPClientConnection()
    conn.request_devlist()
    _, writer, event = await _op_exchange(conn, host, port, timeout)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    assert isinstance(event, DevlistReceived)
    if event.status != OpStatus.OK:
        raise USBIPError(f"{host}:{port} answered OP_REQ_DEVLIST with status {event.status}")
    return event.devices


async def import_device(
    busid: str,
    host: str = "127.0.0.1",
    port: int = USBIP_PORT,
    *,
    timeout: float = 10.0,
    max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
) -> USBIPClient:
    """Import ``busid`` (what ``usbip attach`` does before handing the socket to vhci).

    Raises :class:`ImportRefusedError` with the server's status (4 unknown, 2 busy).
    ``timeout`` bounds the connection and the OP exchange, not the transfers.
    """
    conn = USBIPClientConnection(max_transfer_length=max_transfer_length)
    conn.request_import(busid)
    reader, writer, event = await _op_exchange(conn, host, port, timeout)
    if isinstance(event, ImportRefused):
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        raise ImportRefusedError(event.busid, event.status)
    assert isinstance(event, ImportAccepted)
    assert conn.state is USBIPClientState.URB
    client = USBIPClient(reader, writer, conn)
    client._log.info("usbip.imported", devid=f"0x{event.device.devid:08X}")
    return client
