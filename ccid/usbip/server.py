"""asyncio USB/IP server: export any :class:`~ccid.usb.UsbDevice` to ``usbip attach``.

The adapter moves bytes between sockets and :class:`~ccid.usbip.connection.ServerConnection`
and runs each URB on the device as a task, or inline when the device allows it
(``UsbDevice.start_inline``, :func:`~cardfloor.aio.eager.start_eagerly`): then a URB that
finishes at once (bulk OUT, control) costs no task. Each reply goes out in one write. An IN URB
that must wait is a task parked in the device until data exist; CMD_UNLINK cancels that task.
A connection that ends (EOF, a protocol error, :meth:`USBIPServer.remove_device`) cancels its URBs,
resets the device and frees it for the next import.

Who knows what: each connection (``_Session``) gets one frozen ``_SessionConfig`` (the
server's limits, its warning rate limit and its ``_Exports`` registry) and reaches devices only
through the registry's ``records``/``claim`` and :class:`Export`'s ``release``; the server
reaches a connection only through :meth:`Export.disconnect`. No class reads another's private
attributes.
"""

from __future__ import annotations

import asyncio
import functools
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from logging import DEBUG
from types import MappingProxyType, TracebackType
from typing import Any, Final

from cardfloor.aio.admission import Admission
from cardfloor.aio.eager import start
from cardfloor.aio.inline import InlineReading
from cardfloor.aio.log_limit import LogRateLimit
from cardfloor.aio.stream import listen_backlog
from cardfloor.log import get_logger

from ..usb import ParkingDevice, Stall, UsbDevice
from .codec import DEFAULT_MAX_TRANSFER_LENGTH
from .connection import (
    DEFAULT_MAX_PENDING_URBS,
    DEFAULT_MAX_REFUSED_URBS,
    USBIPServerConnection,
    USBIPServerState,
)
from .constants import USBIP_PORT, Direction, OpStatus, URBStatus
from .errors import USBIPRemoteProtocolError
from .events import (
    DevlistRequested,
    ImportRequested,
    PortReset,
    UnlinkRequested,
    URBRefused,
    URBSubmitted,
    USBIPServerEvent,
)
from .messages import CmdSubmit, ExportedDevice, check_busid
from .stream import READ_SIZE, IPNetwork, peer_address, peer_name, set_nodelay

log = get_logger("ccid.usbip")

DEFAULT_MAX_USBIP_CONNECTIONS: Final = 64
#: Seconds a new connection has to send its OP request (the tools send it at once).
DEFAULT_OP_TIMEOUT: Final = 10.0
#: ``busnum`` of every exported device: there is no real bus behind them.
BUSNUM: Final = 1


class Export:
    """A device the server exports under :attr:`busid`, and who has imported it.

    One connection at a time holds it: the server's connections take it with :meth:`claim` and
    give it back with :meth:`release`; :meth:`disconnect` asks the holder to let go.
    """

    def __init__(self, device: UsbDevice, record: ExportedDevice) -> None:
        self.device = device
        self.record = record
        """What OP_REP_DEVLIST and OP_REP_IMPORT say about the device."""
        self.imports = 0
        """Successful imports so far."""
        self._session: _Session | None = None
        self._changed = asyncio.Event()

    @property
    def busid(self) -> str:
        return self.record.busid

    @property
    def importer(self) -> str | None:
        """``host:port`` of the connection that holds the device now, or None."""
        return self._session.peer if self._session is not None else None

    async def wait_imported(self, count: int = 1) -> None:
        """Wait until the device has been imported ``count`` times in total."""
        while self.imports < count:
            await self._changed.wait()

    async def wait_released(self) -> None:
        """Wait until no connection holds the device (its URBs cancelled, device reset)."""
        while self._session is not None:
            await self._changed.wait()

    def claim(self, session: _Session) -> bool:
        """Let ``session`` hold the device; False while another holds it."""
        if self._session is not None:
            return False
        self._session = session
        self.imports += 1
        self._notify()
        return True

    def release(self, session: _Session) -> None:
        """``session`` let go (its URBs cancelled, the device reset); no-op for a non-holder."""
        if self._session is session:
            self._session = None
            self._notify()

    def disconnect(self, reason: str) -> None:
        """End the holder's connection, if any; :meth:`wait_released` then returns."""
        if self._session is not None:
            self._session.abort(reason)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


class _Exports:
    """The server's devices by busid, as its connections see them: list them, claim one."""

    def __init__(self) -> None:
        self._by_busid: dict[str, Export] = {}
        self.view: Mapping[str, Export] = MappingProxyType(self._by_busid)
        """Read-only view by busid."""

    def add(self, export: Export) -> None:
        self._by_busid[export.busid] = export

    def pop(self, busid: str) -> Export:
        return self._by_busid.pop(busid)

    def records(self) -> list[ExportedDevice]:
        """What OP_REP_DEVLIST lists."""
        return [export.record for export in self._by_busid.values()]

    def claim(self, busid: str, session: _Session) -> Export | OpStatus:
        """The export ``session`` now holds, or why not (NODEV unknown, DEV_BUSY taken)."""
        export = self._by_busid.get(busid)
        if export is None:
            return OpStatus.NODEV
        return export if export.claim(session) else OpStatus.DEV_BUSY


@dataclass(frozen=True, slots=True)
class _SessionConfig:
    """What every connection of one server shares: its limits and its warning rate limit."""

    max_pending_urbs: int
    max_transfer_length: int
    max_refused_urbs: int
    op_timeout: float
    log_limit: LogRateLimit
    exports: _Exports


class _Session:
    """One TCP connection: an OP exchange, then URBs for the device it imported."""

    def __init__(
        self,
        config: _SessionConfig,
        stream_reader: asyncio.StreamReader,
        stream_writer: asyncio.StreamWriter,
    ) -> None:
        self._config = config
        self._reader = stream_reader
        self._writer = stream_writer
        protocol = stream_writer.transport.get_protocol()
        # With USBIPServer's protocol, URBs are handled in the callback that received them.
        self._inline_reading = protocol if isinstance(protocol, InlineReading) else None
        self._conn = USBIPServerConnection(
            max_pending_urbs=config.max_pending_urbs,
            max_transfer_length=config.max_transfer_length,
            max_refused_urbs=config.max_refused_urbs,
        )
        self._export: Export | None = None
        self._urbs: dict[int, asyncio.Task[None]] = {}
        self._detaching = False
        # The imported device's UsbDevice.start_inline (not "_inline": mypyc names the C field
        # "__inline", a gcc keyword).
        self._start_inline = False
        # The imported device, when it is inline and a ParkingDevice: its IN URBs are served by
        # callbacks (_serve_in), parked in the device by seqnum (endpoint, wake) while waiting.
        self._parking: ParkingDevice | None = None
        self._parked: dict[int, tuple[int, Callable[[], None]]] = {}
        # Calls into the device in progress, and the parked URBs it woke meanwhile: those are
        # served once the call is done, so the URB that made data ready completes first.
        self._calls = 0
        self._woken: deque[tuple[CmdSubmit, int]] = deque()
        task = asyncio.current_task()
        assert task is not None
        self._loop = task.get_loop()
        self.task = task
        """The task that serves this connection (the server's accept callback)."""
        self.peer = peer_name(stream_writer)
        self._log = log.bind(peer=self.peer)

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self._config.op_timeout):
                while self._conn.state is USBIPServerState.OP:
                    if not await self._receive():
                        return
            # From here on no deadline: an IN URB may rightly stay parked for minutes.
            inline = self._inline_reading
            while self._conn.state is USBIPServerState.URB:
                if inline is None:
                    data = await self._reader.read(READ_SIZE)
                else:
                    # While this waits, requests are handled as they arrive (_take, inline):
                    # no task wake-up between a CMD_SUBMIT and the device.
                    data = await inline.read(READ_SIZE, self._take)
                if not data:
                    self._log.info("usbip.disconnected")
                    return
                await self._take(data)
        except USBIPRemoteProtocolError as error:
            # Replies to the requests before the bad one (the -12s of a spent budget) still go.
            self._write()
            self._warn(
                "usbip.protocol_error", field=error.field, value=repr(error.value), error=str(error)
            )
        except TimeoutError:
            self._warn("usbip.op_timeout", timeout=self._config.op_timeout)
        except OSError as error:
            self._warn("usbip.connection_lost", error=repr(error))
        finally:
            await self._detach()

    def abort(self, reason: str) -> None:
        """End the connection now: the device is being removed or the server closes."""
        # Dropping the transport wakes whatever the session awaits (a read, a drain) with EOF
        # or a reset; cancelling the session task instead would trip asyncio's stream callback.
        if not self._detaching:
            self._log.info("usbip.aborting", reason=reason)
            self._writer.transport.abort()

    # -- internals ------------------------------------------------------------------------

    async def _receive(self) -> bool:
        data = await self._reader.read(READ_SIZE)
        if not data:
            return False
        await self._handle_data(data)
        return True

    async def _take(self, data: bytes) -> None:
        """The URB phase's handling of one read."""
        await self._handle_data(data)
        # Backpressure: a peer that does not read its replies stops being read.
        await self._writer.drain()

    async def _handle_data(self, data: bytes) -> None:
        events = self._conn.receive_data(data)
        while True:
            await self._handle_all(events)
            self._write()
            if self._conn.error is not None:  # a bad request after the good ones
                raise self._conn.error
            if not self._conn.pending:
                return
            # One batch per loop turn, and nothing more read meanwhile: a peer that packs a
            # thousand URBs into one read delays the other connections by one batch.
            await self._writer.drain()
            await asyncio.sleep(0)
            events = self._conn.receive_data(b"")

    def _warn(self, event: str, **fields: object) -> None:
        """A warning a peer can repeat at will: rate-limited server-wide, with the count dropped."""
        suppressed = self._config.log_limit.allow(event)
        if suppressed is not None:
            self._log.warning(event, **fields, suppressed=suppressed)

    def _write(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)

    async def _handle_all(self, events: list[USBIPServerEvent]) -> None:
        for event in events:
            await self._handle(event)

    async def _handle(self, event: USBIPServerEvent) -> None:
        match event:
            case URBSubmitted(submit):
                if self._log.is_enabled_for(DEBUG):  # its fields cost more than the check
                    self._log.debug(
                        "usbip.urb",
                        seqnum=submit.seqnum,
                        ep=submit.ep,
                        direction=submit.direction.name,
                        length=submit.transfer_buffer_length,
                        setup=submit.setup.hex() if submit.ep == 0 else None,
                    )
                self._calls += 1
                try:
                    if (
                        self._parking is not None
                        and submit.direction == Direction.IN
                        and submit.ep != 0
                    ):
                        self._serve_in(self._parking, submit, self._in_length(submit))
                    else:
                        name = f"usbip-urb-{submit.seqnum}"
                        task = start(
                            self._run(submit), eager=self._start_inline, name=name, loop=self._loop
                        )
                        if task is not None:
                            self._urbs[submit.seqnum] = task
                            task.add_done_callback(functools.partial(self._forget, submit.seqnum))
                finally:
                    self._calls -= 1
                self._serve_woken()
            case UnlinkRequested(seqnum, unlink_seqnum, cancelled):
                self._log.debug(
                    "usbip.unlink", seqnum=seqnum, unlink_seqnum=unlink_seqnum, cancelled=cancelled
                )
                victim = self._urbs.pop(unlink_seqnum, None) if cancelled else None
                if victim is not None:
                    victim.cancel()
                elif cancelled:
                    self._unpark(unlink_seqnum)
            case PortReset(seqnum, cancelled):
                await self._cancel(cancelled)
                assert self._export is not None
                self._reset_device(self._export)
                self._log.info("usbip.port_reset", seqnum=seqnum, cancelled=len(cancelled))
            case URBRefused(submit, status, reason):
                self._warn(
                    "usbip.urb_refused",
                    seqnum=submit.seqnum,
                    status=int(status),
                    reason=reason,
                    refused=self._conn.refused,
                )
            case DevlistRequested():
                records = self._config.exports.records()
                self._conn.send_devlist(records)
                self._log.info("usbip.devlist", devices=len(records))
            case ImportRequested(busid):
                claimed = self._config.exports.claim(busid, self)
                if isinstance(claimed, Export):
                    self._export = claimed
                    self._start_inline = getattr(claimed.device, "start_inline", False) is True
                    if self._start_inline and isinstance(claimed.device, ParkingDevice):
                        self._parking = claimed.device
                    early = self._conn.accept_import(claimed.record)
                    self._log.info("usbip.imported", busid=busid)
                    await self._handle_all(early)  # the URBs that came with the request
                else:
                    self._conn.refuse_import(claimed)
                    self._log.info("usbip.import_refused", busid=busid, status=claimed.name)

    def _forget(self, seqnum: int, task: asyncio.Task[None]) -> None:
        if self._urbs.get(seqnum) is task:
            del self._urbs[seqnum]

    def _in_length(self, submit: CmdSubmit) -> int:
        # A huge IN URB is legal; it is served in pieces of at most max_transfer_length.
        return min(submit.transfer_buffer_length, self._config.max_transfer_length)

    def _serve_in(self, device: ParkingDevice, submit: CmdSubmit, length: int) -> None:
        """Complete an IN URB with the device's data now, or park it until the device wakes
        it (no task: see :class:`~ccid.usb.ParkingDevice`)."""
        endpoint = 0x80 | submit.ep
        try:
            data = device.take_in(endpoint, length)
        except Exception as error:
            self._complete(submit, *self._failed(submit, error))
            return
        if data is None:
            wake = functools.partial(self._wake_in, submit, length)
            self._parked[submit.seqnum] = (endpoint, wake)
            device.park_in(endpoint, wake)
            return
        self._complete(submit, URBStatus.OK, self._fit(submit, data, length), None)

    def _wake_in(self, submit: CmdSubmit, length: int) -> None:
        """The device may have data for a parked IN URB (it forgot the wake)."""
        if self._parked.pop(submit.seqnum, None) is None:
            return
        self._woken.append((submit, length))
        self._serve_woken()

    def _serve_woken(self) -> None:
        """Serve the woken IN URBs in order, unless a call into the device is in progress (that
        call's URB goes first: see _handle)."""
        device = self._parking
        while self._woken and not self._calls and device is not None:
            submit, length = self._woken.popleft()
            self._calls += 1
            try:
                self._serve_in(device, submit, length)
            finally:
                self._calls -= 1

    def _unpark(self, seqnum: int) -> None:
        parked = self._parked.pop(seqnum, None)
        if parked is not None and self._parking is not None:
            self._parking.unpark_in(*parked)

    async def _run(self, submit: CmdSubmit) -> None:
        status, data, accepted = await self._call_device(submit)
        # No await between the device's return and complete(): an unlink read in between
        # would cancel a URB whose data the device has already handed over.
        self._complete(submit, status, data, accepted)

    def _complete(self, submit: CmdSubmit, status: int, data: bytes, accepted: int | None) -> None:
        if self._conn.complete(submit.seqnum, status=status, data=data, actual_length=accepted):
            if self._log.is_enabled_for(DEBUG):
                self._log.debug(
                    "usbip.ret_submit",
                    seqnum=submit.seqnum,
                    status=status,
                    actual_length=len(data) if submit.direction == Direction.IN else accepted,
                )
            # One write per RET_SUBMIT, as Linux's stub sends them: tshark 4.0's usbip dissector
            # loses the message boundaries when one TCP segment holds several RET_SUBMITs
            # with data (tests/interop/test_tshark_usbip.py).
            self._write()

    async def _call_device(self, submit: CmdSubmit) -> tuple[int, bytes, int | None]:
        assert self._export is not None
        device = self._export.device
        try:
            if submit.ep == 0:
                setup = submit.setup_packet
                answer = await device.control(setup, submit.data)
                if submit.direction == Direction.IN:
                    return URBStatus.OK, self._fit(submit, answer, setup.wLength), None
                return URBStatus.OK, b"", None
            if submit.direction == Direction.IN:
                length = self._in_length(submit)
                data = await device.transfer_in(0x80 | submit.ep, length)
                return URBStatus.OK, self._fit(submit, data, length), None
            accepted = await device.transfer_out(submit.ep, submit.data)
            if not 0 <= accepted <= len(submit.data):
                self._log.error(
                    "usbip.device_error",
                    seqnum=submit.seqnum,
                    error=f"accepted {accepted} of {len(submit.data)} bytes",
                )
                return URBStatus.EPROTO, b"", 0
            return URBStatus.OK, b"", accepted
        except Exception as error:
            return self._failed(submit, error)

    def _failed(self, submit: CmdSubmit, error: Exception) -> tuple[int, bytes, int]:
        """The URB's completion when the device raised ``error`` (called in the ``except``
        block): a :class:`Stall` is EPIPE; anything else is a device bug, which fails this URB,
        not the connection."""
        if isinstance(error, Stall):
            self._log.debug("usbip.stall", seqnum=submit.seqnum, ep=submit.ep)
            return URBStatus.EPIPE, b"", 0
        self._log.exception("usbip.device_error", seqnum=submit.seqnum, error=repr(error))
        return URBStatus.EPROTO, b"", 0

    def _fit(self, submit: CmdSubmit, data: bytes, asked: int) -> bytes:
        limit = min(asked, submit.transfer_buffer_length)
        if len(data) > limit:
            # Never more than asked: Linux vhci drops the device (older kernels crashed).
            self._log.error(
                "usbip.device_overrun", seqnum=submit.seqnum, length=len(data), limit=limit
            )
            return data[:limit]
        return data

    async def _cancel(self, seqnums: Iterable[int]) -> None:
        seqnums = list(seqnums)
        for seqnum in seqnums:
            self._unpark(seqnum)
        tasks = [task for seqnum in seqnums if (task := self._urbs.pop(seqnum, None)) is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def _reset_device(self, export: Export) -> None:
        try:
            export.device.reset()
        except Exception as error:  # a device bug must not keep the device claimed
            self._log.exception("usbip.device_error", busid=export.busid, error=repr(error))

    async def _detach(self) -> None:
        self._detaching = True
        left = self._conn.close()
        self._woken.clear()
        await self._cancel([*self._urbs, *self._parked])
        export = self._export
        if export is not None:
            self._reset_device(export)
            export.release(self)
            self._log.info("usbip.detached", busid=export.busid, cancelled=len(left))
        self._writer.close()
        try:
            # A peer that never reads its last reply must not hold the connection open.
            async with asyncio.timeout(self._config.op_timeout):
                await self._writer.wait_closed()
        except TimeoutError:
            self._writer.transport.abort()
        except OSError:
            pass


class USBIPServer:
    """A USB/IP server. Create it with :func:`serve_usbip`; add and remove devices at any time."""

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_USBIP_CONNECTIONS,
        max_pending_urbs: int = DEFAULT_MAX_PENDING_URBS,
        max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
        op_timeout: float = DEFAULT_OP_TIMEOUT,
        allow: Sequence[IPNetwork] | None = None,
        max_connections_per_source: int | None = None,
        max_refused_urbs: int = DEFAULT_MAX_REFUSED_URBS,
    ) -> None:
        self._admission = Admission(
            max_connections=max_connections,
            allow=allow,
            max_connections_per_source=max_connections_per_source,
        )
        self._exports = _Exports()
        self._config = _SessionConfig(
            max_pending_urbs=max_pending_urbs,
            max_transfer_length=max_transfer_length,
            max_refused_urbs=max_refused_urbs,
            op_timeout=op_timeout,
            # Shared by every connection: a flooder that reconnects keeps meeting the same limit.
            log_limit=LogRateLimit(),
            exports=self._exports,
        )
        self._devnum = 0
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None

    @property
    def exports(self) -> Mapping[str, Export]:
        """Exported devices by busid (read-only view)."""
        return self._exports.view

    def add_device(
        self, device: UsbDevice, *, busid: str | None = None, path: str | None = None
    ) -> Export:
        """Export ``device``; ``busid`` defaults to the next free ``1-N``.

        Raises :class:`ValueError` for a busid in use or one that does not fit the wire.
        """
        self._devnum += 1
        if busid is None:
            while f"{BUSNUM}-{self._devnum}" in self._exports.view:
                self._devnum += 1
            busid = f"{BUSNUM}-{self._devnum}"
        check_busid(busid)
        if busid in self._exports.view:
            raise ValueError(f"busid {busid!r} is already exported")
        record = ExportedDevice.from_summary(
            device.summary,
            busid=busid,
            busnum=BUSNUM,
            devnum=self._devnum,
            path=path if path is not None else f"/vscard/usb{BUSNUM}/{busid}",
        )
        export = Export(device, record)
        self._exports.add(export)
        log.info(
            "usbip.device_added",
            busid=busid,
            vid_pid=f"{record.idVendor:04x}:{record.idProduct:04x}",
            speed=int(record.speed),
        )
        return export

    async def remove_device(self, busid: str) -> None:
        """Stop exporting ``busid``; its importer, if any, is disconnected first.

        Returns once the device is released (URBs cancelled, device reset). Raises
        :class:`KeyError` for a busid that is not exported.
        """
        export = self._exports.pop(busid)
        export.disconnect(f"device {busid} removed")
        await export.wait_released()
        log.info("usbip.device_removed", busid=busid)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        # As Any: typeshed's Server.sockets is a tuple, uvloop's a list, and the compiled build
        # checks a declared tuple ("tuple object expected; got list").
        server: Any = self._server
        assert server is not None
        return tuple(server.sockets)

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful after ``port=0``)."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._sessions)

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    def close(self) -> None:
        """Stop listening and close every connection (each detaches its device)."""
        if self._server is not None:
            self._server.close()
        for session in self._sessions:
            session.abort("server closing")

    async def wait_closed(self) -> None:
        """Wait until the listener and every connection are closed."""
        tasks = [session.task for session in self._sessions]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> USBIPServer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # -- internals ------------------------------------------------------------------------

    async def _listen(self, host: str | None, port: int, max_connections: int) -> None:
        backlog, wanted = listen_backlog(max_connections)
        loop = asyncio.get_running_loop()
        # asyncio.start_server's streams, with a protocol that can hand a connection's bytes
        # to its session in the callback that received them (cardfloor.aio.inline).
        self._server = await loop.create_server(
            lambda: InlineReading(asyncio.StreamReader(), self._accept),
            host,
            port,
            backlog=backlog,
        )
        if backlog < wanted:
            log.warning(
                "usbip.listen_backlog_cut",
                backlog=backlog,
                wanted=wanted,
                advice="raise net.core.somaxconn: a reconnect storm may overflow the queue",
            )
        log.info("usbip.listening", host=host, port=self.port, backlog=backlog)

    async def _accept(
        self, stream_reader: asyncio.StreamReader, stream_writer: asyncio.StreamWriter
    ) -> None:
        address = peer_address(stream_writer)
        refusal = self._admission.refusal(address)
        if refusal is not None:
            log.warning("usbip.connection_refused", peer=peer_name(stream_writer), **refusal)
            stream_writer.close()
            return
        set_nodelay(stream_writer, keepalive=True)
        session = _Session(self._config, stream_reader, stream_writer)
        self._sessions.add(session)
        self._admission.opened(address)
        log.info("usbip.connection_opened", peer=session.peer)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._admission.closed(address)
            log.info("usbip.connection_closed", peer=session.peer)


async def serve_usbip(
    devices: Iterable[UsbDevice] = (),
    host: str | None = "127.0.0.1",
    port: int = USBIP_PORT,
    *,
    max_connections: int = DEFAULT_MAX_USBIP_CONNECTIONS,
    max_pending_urbs: int = DEFAULT_MAX_PENDING_URBS,
    max_transfer_length: int = DEFAULT_MAX_TRANSFER_LENGTH,
    op_timeout: float = DEFAULT_OP_TIMEOUT,
    allow: Sequence[IPNetwork] | None = None,
    max_connections_per_source: int | None = None,
) -> USBIPServer:
    """Listen for USB/IP importers on ``host`` (all interfaces when None) and ``port``.

    With ``allow``, connections from other addresses are closed at once, and so are connections
    past ``max_connections_per_source`` from one address.

    ``devices`` are exported as ``1-1``, ``1-2``... (:meth:`USBIPServer.add_device` adds more).
    Past ``max_connections`` new connections are closed at once; a connection may have
    ``max_pending_urbs`` URBs pending (more are answered -12, ENOMEM) and send OUT URBs of up
    to ``max_transfer_length`` bytes (a bigger one closes it before its data is read); an IN
    URB gets at most that many bytes. A connection that has not sent its OP request after
    ``op_timeout`` seconds is closed.

    The listen backlog holds ``max_connections`` plus headroom (cut to the system's
    ``somaxconn``, with a warning), so every importer of a storm waits in the kernel's queue
    instead of retrying its SYN. asyncio's loop then accepts up to that backlog per wake-up,
    uvloop (libuv) until the queue is empty.
    """
    server = USBIPServer(
        max_connections=max_connections,
        max_pending_urbs=max_pending_urbs,
        max_transfer_length=max_transfer_length,
        op_timeout=op_timeout,
        allow=allow,
        max_connections_per_source=max_connections_per_source,
    )
    for device in devices:
        server.add_device(device)
    await server._listen(host, port, max_connections)
    return server
