"""asyncio server: accept VSCard clients (vscclient, SPICE-style) and use their cards."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import functools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from logging import DEBUG
from ssl import SSLContext
from types import TracebackType
from typing import Any

from cardfloor.aio.admission import Admission
from cardfloor.aio.inline import InlineReading
from cardfloor.aio.log_limit import LogRateLimit
from cardfloor.aio.stream import (
    READ_SIZE,
    IPAddress,
    IPNetwork,
    address_of,
    listen_backlog,
    name_of,
    peer_name,
    set_nodelay,
)
from cardfloor.iso7816.trace import command_trace, response_trace
from cardfloor.log import Logger, get_logger

from ..constants import MAX_FRAME_SIZE, Capability
from ..errors import (
    APDUFailedError,
    CardRemovedError,
    ConnectionClosedError,
    RemoteProtocolError,
)
from ..events import (
    APDUAborted,
    APDUFailed,
    APDUResponse,
    CardInserted,
    CardRemoved,
    FlushCompleted,
    HostEvent,
    PeerInit,
    ReaderAdded,
    ReaderRemoved,
    Unexpected,
)
from ..host import DEFAULT_MAX_READERS, DEFAULT_MAX_VIOLATIONS, HostConnection, HostReader
from ..messages import ReadAhead, ResponseChain

log = get_logger("vscard.server")

#: Seconds a new connection has to send its Init (as USB/IP's op_timeout for its OP request).
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Frames of one connection handled per loop turn: a 64 KiB read holds thousands of small
#: ones, and handling them all at once would stall every other connection meanwhile.
MESSAGES_PER_TURN = 64
#: Connections accepted per loop turn in a storm, before established ones get their turn.
ACCEPTS_PER_TURN = 64

SessionEvent = PeerInit | ReaderAdded | ReaderRemoved | CardInserted | CardRemoved
"""What :meth:`Session.events` yields. APDU results go to :meth:`Session.transmit` instead."""

SessionHandler = Callable[["Session"], Awaitable[None]]
"""Runs once per accepted connection; the connection closes when it returns."""

Answered = Callable[[bytes | Exception], None]
"""Gets the response to an APDU sent with :meth:`Session.transmit_soon`, or the error
:meth:`Session.transmit` would have raised in its place."""

_DONE = object()


class Session:
    """One client connection to the server: its readers, their cards, and a way to use them."""

    def __init__(
        self,
        stream_reader: asyncio.StreamReader,
        stream_writer: asyncio.StreamWriter,
        *,
        max_readers: int,
        max_frame_size: int,
        event_queue_size: int,
        frame_timeout: float = 10.0,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_violations: int = DEFAULT_MAX_VIOLATIONS,
        log_limit: LogRateLimit | None = None,
        response_chain: bool = False,
        read_ahead: bool = False,
    ) -> None:
        self._stream_reader = stream_reader
        self._writer = stream_writer
        self._transport = stream_writer.transport  # _write_now and _take write to it directly
        protocol = stream_writer.transport.get_protocol()
        # With Server's protocol, frames are handled in the callback that received them once
        # the client's Init is in (see _read).
        self._inline_reading = protocol if isinstance(protocol, InlineReading) else None
        self._frame_timeout = frame_timeout
        self._partial_deadline: float | None = None
        # Ends a frame left incomplete by bytes handled inline (_take) at _partial_deadline.
        self._frame_timer: asyncio.TimerHandle | None = None
        self._handshake_timeout = handshake_timeout
        # Kept: under Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()
        # Cleared by the client's Init: until then the connection holds a slot on credit.
        self._init_deadline = (
            None if handshake_timeout is None else self._loop.time() + handshake_timeout
        )
        self._log_limit = LogRateLimit() if log_limit is None else log_limit
        self._conn = HostConnection(
            max_readers=max_readers,
            max_frame_size=max_frame_size,
            max_violations=max_violations,
            max_messages=MESSAGES_PER_TURN,
            capabilities=Capability.CARD_RESET
            | (Capability.RESPONSE_CHAIN if response_chain else Capability(0))
            | (Capability.READ_AHEAD if read_ahead else Capability(0)),
        )
        # The chain and the ReadAheads each reader's last response came with (see
        # take_response_chain, take_read_ahead).
        self._chains: dict[int, ResponseChain] = {}
        self._ahead: dict[int, tuple[ReadAhead, ...]] = {}
        # Bounded: a client that produces events faster than the application reads them
        # stops being read (TCP backpressure) instead of growing this queue.
        self._events: asyncio.Queue[SessionEvent | object] = asyncio.Queue(event_queue_size)
        self._apdus: dict[int, asyncio.Future[bytes]] = {}
        self._flushes: dict[int, asyncio.Future[None]] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        # transmit() calls in progress (waiting for their turn or their answer), by reader, and
        # the callbacks of APDUs sent by transmit_soon() awaiting theirs.
        self._transmitting: dict[int, int] = {}
        self._answers: dict[int, Answered] = {}
        self._closed = asyncio.Event()
        self.error: BaseException | None = None
        """Why the connection ended, when it was not a clean close."""
        self.peer = peer_name(stream_writer)
        self._log = log.bind(peer=self.peer)

    @property
    def readers(self) -> Mapping[int, HostReader]:
        """The client's readers by id (a live, read-only view)."""
        return self._conn.readers

    @property
    def closed(self) -> bool:
        """True once the connection is gone."""
        return self._closed.is_set()

    @property
    def card_reset(self) -> bool:
        """True once the client's Init announced :attr:`~vscard.Capability.CARD_RESET` as
        ours does: :meth:`reset_card` and :meth:`set_protocol` may be used."""
        return self._conn.card_reset

    @property
    def response_chain(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.RESPONSE_CHAIN` (the server
        was told ``response_chain=True``): responses may come with a chain, which the
        application must answer GET RESPONSEs from (see :meth:`take_response_chain`)."""
        return self._conn.response_chain

    def take_response_chain(self, reader_id: int) -> ResponseChain | None:
        """The chain the last :meth:`transmit` response on ``reader_id`` came with, once."""
        return self._chains.pop(reader_id, None)

    @property
    def read_ahead(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.READ_AHEAD` (the server was
        told ``read_ahead=True``): responses may come with ReadAheads, which the application
        must answer the matching commands from (see :meth:`take_read_ahead`)."""
        return self._conn.read_ahead

    def take_read_ahead(self, reader_id: int) -> tuple[ReadAhead, ...]:
        """The ReadAheads the last :meth:`transmit` response on ``reader_id`` came with, once
        (see :class:`vscard.read_ahead.Lookahead`)."""
        return self._ahead.pop(reader_id, ())

    def reset_card(self, reader_id: int, protocol: int = 0) -> None:
        """Tell the client that the reader powered its card off and on, and runs ``protocol``.

        Written at once, without waiting: the client finishes the reset before it handles the
        reader's next APDU. Coalescing is the caller's: two resets with no APDU between them
        are one. Raises :class:`~vscard.LocalProtocolError` unless :attr:`card_reset`,
        :class:`~vscard.UnknownReaderError` or :class:`~vscard.NoCardError`.
        """
        self._conn.send_card_reset(reader_id, protocol)
        self._log.debug("vscard.card_reset", reader_id=reader_id, protocol=protocol)
        self._write_now()

    def set_protocol(self, reader_id: int, protocol: int) -> None:
        """Tell the client that the reader now runs ``protocol`` with its card; raises as
        :meth:`reset_card`."""
        self._conn.send_card_protocol(reader_id, protocol)
        self._log.debug("vscard.card_protocol", reader_id=reader_id, protocol=protocol)
        self._write_now()

    async def next_event(self) -> SessionEvent:
        """Wait for the next reader or card event; raise ConnectionClosedError at the end."""
        item = await self._events.get()
        if item is _DONE:
            self._events.put_nowait(_DONE)  # keep answering later calls the same way
            raise ConnectionClosedError(f"VSCard client {self.peer} disconnected")
        assert isinstance(item, PeerInit | ReaderAdded | ReaderRemoved | CardInserted | CardRemoved)
        return item

    def events(self) -> AsyncIterator[SessionEvent]:
        """Yield reader and card events until the connection closes."""
        return _Events(self)

    async def transmit(self, reader_id: int, apdu: bytes) -> bytes:
        """Send a command APDU to the card in ``reader_id``; return its response with SW1 SW2.

        Concurrent calls on one reader wait their turn (VSCard allows one APDU in flight).
        Raises :class:`APDUFailedError`, :class:`CardRemovedError`,
        :class:`ConnectionClosedError`, :class:`UnknownReaderError` or :class:`NoCardError`.
        """
        lock = self._locks.setdefault(reader_id, asyncio.Lock())
        transmitting = self._transmitting
        transmitting[reader_id] = transmitting.get(reader_id, 0) + 1
        try:
            async with lock:
                if self.closed:
                    raise ConnectionClosedError(f"VSCard client {self.peer} disconnected")
                self._conn.send_apdu(reader_id, apdu)
                self._chains.pop(reader_id, None)
                self._ahead.pop(reader_id, None)
                future: asyncio.Future[bytes] = self._loop.create_future()
                self._apdus[reader_id] = future
                debug = self._log.is_enabled_for(DEBUG)  # the traces cost more than the check
                if debug:
                    self._log.debug("vscard.apdu", reader_id=reader_id, command=command_trace(apdu))
                await self._flush()
                response = await future
                if debug:
                    self._log.debug(
                        "vscard.apdu", reader_id=reader_id, response=response_trace(response)
                    )
                return response
        finally:
            left = transmitting[reader_id] - 1
            if left:
                transmitting[reader_id] = left
            else:
                del transmitting[reader_id]

    def transmit_soon(self, reader_id: int, apdu: bytes, answered: Answered) -> bool:
        """:meth:`transmit` for a caller that cannot wait: send ``apdu`` now, and call
        ``answered`` with the response (or the error :meth:`transmit` would raise) in the step
        that receives it, with no task in between. ``answered`` must not raise.

        False, with nothing sent, when the APDU would have to wait: for another
        :meth:`transmit` or :meth:`transmit_soon` on the reader, or for the connection's
        writes to drain (:meth:`transmit` then waits its turn). Raises as :meth:`transmit`
        does before the APDU is sent. When the connection ends, ``answered`` gets
        :class:`ConnectionClosedError` at the next loop turn, after a task waiting in
        :meth:`events` has seen the end.
        """
        if (
            reader_id in self._transmitting
            or reader_id in self._answers
            or self._transport.get_write_buffer_size()
        ):
            return False
        if self.closed:
            raise ConnectionClosedError(f"VSCard client {self.peer} disconnected")
        self._conn.send_apdu(reader_id, apdu)
        self._chains.pop(reader_id, None)
        self._ahead.pop(reader_id, None)
        self._answers[reader_id] = answered
        if self._log.is_enabled_for(DEBUG):
            self._log.debug("vscard.apdu", reader_id=reader_id, command=command_trace(apdu))
        self._write_now()
        return True

    async def flush(self, reader_id: int) -> None:
        """Send VSC_Flush and wait for the client's FlushComplete."""
        self._conn.send_flush(reader_id)
        future = self._flushes.setdefault(reader_id, self._loop.create_future())
        await self._flush()
        await future

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # -- internals ------------------------------------------------------------------------

    async def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
            await self._writer.drain()

    def _write_now(self) -> None:
        # Ordered after every APDU already written; the next _flush's drain pays for it.
        data = self._conn.data_to_send()
        transport = self._transport
        if data and not transport.is_closing():
            transport.write(data)

    def _warn(self, event: str, **fields: object) -> None:
        _warn(self._log, self._log_limit, event, fields)

    async def _read(self) -> bytes:
        """The next bytes; an incomplete frame must be finished within ``frame_timeout``, and
        the client's Init must come within ``handshake_timeout`` of the connection."""
        if not self._conn.buffered:
            self._partial_deadline = None
            if self._init_deadline is None:
                if self._inline_reading is not None:
                    # While this waits, frames are handled as they arrive (_take, inline): no
                    # task wake-up between a client's answer and the reader waiting for it.
                    return await self._inline_reading.read(READ_SIZE, self._take)
                return await self._stream_reader.read(READ_SIZE)
            deadline = self._init_deadline
        else:
            if self._partial_deadline is None:
                self._partial_deadline = self._loop.time() + self._frame_timeout
            deadline = self._partial_deadline
            if self._init_deadline is not None:
                deadline = min(deadline, self._init_deadline)
        async with asyncio.timeout_at(deadline):
            return await self._stream_reader.read(READ_SIZE)

    async def _handle(self, data: bytes) -> None:
        await self._handle_events(self._conn.receive_data(data))

    async def _handle_events(self, events: list[HostEvent], *, flushed: bool = False) -> None:
        """Dispatch ``events`` (after writing the connection's replies, unless ``flushed``),
        then the frames of the same read still pending, a batch per loop turn."""
        conn = self._conn
        while True:
            if not flushed:
                await self._flush()
            flushed = False
            for event in events:
                await self._dispatch(event)
            if conn.error is not None:  # a bad frame after the good ones
                raise conn.error
            if not conn.pending:
                return
            # More frames of this read wait: let the other connections run first, and read
            # no more of this one until they are handled (backpressure).
            await asyncio.sleep(0)
            events = conn.receive_data(b"")

    def _take(self, data: bytes) -> Coroutine[Any, Any, None] | None:
        """:meth:`_handle` for bytes handled inline: at once (None) while every message is an
        answer (as a card's answers are) and what the connection writes meanwhile leaves
        nothing buffered, else a coroutine for the rest (:meth:`_taken`). No coroutine or
        task per answer, on either build (docs/compiled.md)."""
        conn = self._conn
        events = conn.receive_data(data)
        data = conn.data_to_send()  # the automatic answers (as _handle's first _flush)
        transport = self._transport
        if data and not transport.is_closing():
            transport.write(data)
            if transport.get_write_buffer_size():
                # Not all sent: drain() applies backpressure (as _flush does).
                return self._taken(events, 0, drain=True)
        for index, event in enumerate(events):
            if not self._answer(event):
                return self._taken(events, index)
        if conn.error is not None:  # a bad frame after the good ones
            raise conn.error
        if conn.pending:
            return self._taken([], 0)
        self._frame_deadline()
        return None

    async def _taken(self, events: list[HostEvent], start: int, *, drain: bool = False) -> None:
        """The rest of :meth:`_take`: ``events[start:]`` and what follows them, as in
        :meth:`_handle`."""
        if drain:
            await self._writer.drain()
        await self._handle_events(events[start:], flushed=True)
        self._frame_deadline()

    def _frame_deadline(self) -> None:
        """After bytes handled inline: the reading task waits without a deadline meanwhile, so
        a frame they leave incomplete gets its deadline here, as in _read."""
        if not self._conn.buffered:
            self._partial_deadline = None
            if self._frame_timer is not None:
                self._frame_timer.cancel()
                self._frame_timer = None
        elif self._partial_deadline is None:
            self._partial_deadline = self._loop.time() + self._frame_timeout
            self._frame_timer = self._loop.call_at(self._partial_deadline, self._frame_overdue)

    def _frame_overdue(self) -> None:
        self._frame_timer = None
        if self._conn.buffered and self._inline_reading is not None:
            self._inline_reading.interrupt(TimeoutError())

    async def _read_loop(self) -> None:
        try:
            while data := await self._read():
                await self._handle(data)
            self._log.info("vscard.disconnected")
        except RemoteProtocolError as error:
            self._warn(
                "vscard.protocol_error",
                field=error.field,
                value=repr(error.value),
                error=str(error),
            )
            self.error = error
        except TimeoutError as error:
            # A slow-loris client, or one that never sends Init, holds one connection slot,
            # never the others', and not long.
            if self._init_deadline is not None and (self._loop.time() >= self._init_deadline):
                self._warn("vscard.handshake_timeout", handshake_timeout=self._handshake_timeout)
            else:
                self._warn(
                    "vscard.frame_timeout",
                    buffered=self._conn.buffered,
                    frame_timeout=self._frame_timeout,
                )
            self.error = error
        except OSError as error:
            self._warn("vscard.connection_lost", error=repr(error))
            self.error = error
        finally:
            self._finish()

    async def _dispatch(self, event: HostEvent) -> None:
        match event:
            case PeerInit():
                self._init_deadline = None
                self._log.info("vscard.peer_init", **_event_fields(event))
                await self._events.put(event)
            case ReaderAdded() | ReaderRemoved() | CardInserted() | CardRemoved():
                self._log.info(f"vscard.{_event_name(event)}", **_event_fields(event))
                await self._events.put(event)
            case _:
                self._answer(event)

    def _answer(self, event: HostEvent) -> bool:
        """Handle ``event`` when it needs no wait (all but reader and card events, which may
        wait for room in the event queue); False when it needs one (see :meth:`_dispatch`)."""
        match event:
            case APDUResponse(reader_id, data, chain, ahead):
                if chain is not None:
                    self._chains[reader_id] = chain
                if ahead:
                    self._ahead[reader_id] = ahead
                self._resolve(reader_id, data)
            case APDUFailed(reader_id, code):
                self._resolve(reader_id, APDUFailedError(reader_id, code))
            case APDUAborted(reader_id):
                self._resolve(reader_id, CardRemovedError(reader_id))
            case FlushCompleted(reader_id):
                future = self._flushes.pop(reader_id, None)
                if future is not None and not future.done():
                    future.set_result(None)
            case Unexpected(message, reason):
                self._warn("vscard.unexpected", message=repr(message), reason=reason)
            case _:
                return False
        return True

    def _resolve(self, reader_id: int, result: bytes | Exception) -> None:
        answered = self._answers.pop(reader_id, None)
        if answered is not None:
            if isinstance(result, bytes) and self._log.is_enabled_for(DEBUG):
                self._log.debug("vscard.apdu", reader_id=reader_id, response=response_trace(result))
            try:
                answered(result)
            except Exception as error:  # the caller's bug must not end the connection
                self._log.exception("vscard.answer_failed", reader_id=reader_id, error=repr(error))
            return
        future = self._apdus.pop(reader_id, None)
        if future is None or future.done():
            return
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)

    def _finish(self) -> None:
        self._closed.set()
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        closed = ConnectionClosedError(f"VSCard client {self.peer} disconnected")
        futures: list[asyncio.Future[bytes] | asyncio.Future[None]]
        futures = [*self._apdus.values(), *self._flushes.values()]
        for future in futures:
            if not future.done():
                future.set_exception(closed)
                future.exception()  # mark retrieved: the caller may have been cancelled
        self._apdus.clear()
        self._flushes.clear()
        # Make room for the end marker: a reader of events must learn the session ended.
        while self._events.full():
            self._events.get_nowait()
        self._events.put_nowait(_DONE)
        # After the end marker: the application learns that the session ended (and unplugs
        # its readers) before the APDUs in flight fail, as with transmit's futures.
        for reader_id in list(self._answers):
            self._loop.call_soon(self._resolve, reader_id, closed)
        self._writer.close()


class _Events:
    """:meth:`Session.events`: an async iterator class, not an async generator, which mypyc
    does not compile (the compiled build, docs/compiled.md)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> SessionEvent:
        try:
            return await self._session.next_event()
        except ConnectionClosedError:
            raise StopAsyncIteration from None


def _warn(
    logger: Logger,
    limit: LogRateLimit,
    event: str,
    fields: dict[str, object],
) -> None:
    """A warning a peer can repeat at will, through the server's rate limit: past its burst the
    lines are counted, and the next one let through says ``suppressed=N``."""
    suppressed = limit.allow(event)
    if suppressed is not None:
        if suppressed:
            fields["suppressed"] = suppressed
        logger.warning(event, **fields)


def _event_name(event: SessionEvent) -> str:
    return {
        PeerInit: "peer_init",
        ReaderAdded: "reader_added",
        ReaderRemoved: "reader_removed",
        CardInserted: "card_inserted",
        CardRemoved: "card_removed",
    }[type(event)]


def _event_fields(event: SessionEvent) -> dict[str, object]:
    fields: dict[str, object] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        fields[field.name] = value.hex() if isinstance(value, bytes) else value
    return fields


class Server:
    """A listening VSCard host. Create it with :func:`serve`."""

    def __init__(
        self,
        handler: SessionHandler,
        *,
        max_connections: int,
        max_readers: int,
        max_frame_size: int,
        event_queue_size: int,
        ssl: SSLContext | None = None,
        allow: Sequence[IPNetwork] | None = None,
        max_connections_per_source: int | None = None,
        tls_handshake_timeout: float = 10.0,
        frame_timeout: float = 10.0,
        handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
        max_violations: int = DEFAULT_MAX_VIOLATIONS,
        log_limit: LogRateLimit | None = None,
        response_chain: bool = False,
        read_ahead: bool = False,
    ) -> None:
        self._handler = handler
        self._ssl = ssl
        self._max_connections = max_connections
        self._admission = Admission(
            max_connections=max_connections,
            allow=allow,
            max_connections_per_source=max_connections_per_source,
        )
        self._tls_handshake_timeout = tls_handshake_timeout
        # One for the whole server: a storm of bad peers must not multiply the lines.
        self._log_limit = LogRateLimit() if log_limit is None else log_limit
        self._new_session = functools.partial(
            Session,
            max_readers=max_readers,
            max_frame_size=max_frame_size,
            event_queue_size=event_queue_size,
            frame_timeout=frame_timeout,
            handshake_timeout=handshake_timeout,
            max_violations=max_violations,
            log_limit=self._log_limit,
            response_chain=response_chain,
            read_ahead=read_ahead,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[socket.socket] = []
        self._accepting: set[asyncio.Task[None]] = set()
        self._unopened: set[socket.socket] = set()

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets."""
        return tuple(self._listeners)

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful after ``port=0``)."""
        port: int = self.sockets[0].getsockname()[1]
        return port

    @property
    def connections(self) -> int:
        """Client connections being served now."""
        return len(self._tasks)

    async def serve_forever(self) -> None:
        """Serve until cancelled (then close, as :meth:`close`)."""
        try:
            await asyncio.gather(*self._accepting)
        finally:
            self.close()
            await self.wait_closed()

    def close(self) -> None:
        """Stop listening and close every client connection."""
        for task in (*self._accepting, *self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the listeners and every connection are closed."""
        tasks = (*self._accepting, *self._tasks)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    async def _listen(self, host: str | None, port: int) -> None:
        """Bind and listen on every address ``host`` has (all interfaces when None).

        Our own sockets, not asyncio.start_server's: a connection must reach
        ``loop.connect_accepted_socket`` unread, so that TLS (when on) starts at its first byte.
        A plain transport upgraded later with ``start_tls`` may already have read the client's
        ClientHello into its StreamReader (uvloop starts reading at once), and the handshake
        then waits for bytes it will never get (uvloop#707, CPython gh-142352).
        """
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        backlog, wanted = listen_backlog(self._max_connections)
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                try:
                    listener = socket.socket(family, kind, proto)
                except OSError:  # a family this host lacks (IPv6 off)
                    continue
                self._listeners.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    listener.bind(address)
                except OSError as error:
                    raise OSError(
                        error.errno,
                        f"error while attempting to bind on address {address!r}: {error.strerror}",
                    ) from None
                listener.listen(backlog)
                listener.setblocking(False)
            if not self._listeners:
                raise OSError(f"no address to listen on for {host!r}")
        except BaseException:
            for listener in self._listeners:
                listener.close()
            self._listeners.clear()
            raise
        if backlog < wanted:
            log.warning(
                "vscard.listen_backlog_cut",
                backlog=backlog,
                wanted=wanted,
                advice="raise net.core.somaxconn: a reconnect storm may overflow the queue",
            )
        for listener in self._listeners:
            task = asyncio.create_task(self._accept_forever(listener))
            self._accepting.add(task)
            task.add_done_callback(self._accepting.discard)

    async def _accept_forever(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    connection, peer = await loop.sock_accept(listener)  # wait for one
                    self._admit(connection, peer)
                    # Then empty the queue a batch at a time: in a storm, the established
                    # connections and the new ones' setup get the loop between batches.
                    for _ in range(ACCEPTS_PER_TURN - 1):
                        connection, peer = listener.accept()
                        connection.setblocking(False)
                        self._admit(connection, peer)
                    await asyncio.sleep(0)
                except BlockingIOError:
                    continue  # the queue is empty
                except (ConnectionAbortedError, InterruptedError):
                    continue  # the client left before we took it
                except OSError as error:
                    if error.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                        log.error("vscard.accept_failed", error=str(error))
                        raise
                    # Out of descriptors or memory: let connections end, as asyncio does.
                    log.warning("vscard.accept_failed", error=str(error), retry=1.0)
                    await asyncio.sleep(1.0)
        finally:
            listener.close()

    def _warn(self, event: str, **fields: object) -> None:
        _warn(log, self._log_limit, event, fields)

    def _admit(self, connection: socket.socket, peername: object) -> None:
        """Refuse the new connection at once, or serve it in a task of its own."""
        peer = name_of(peername)
        address = address_of(peername)
        refusal = self._admission.refusal(address)
        if refusal is not None:
            self._warn("vscard.connection_refused", peer=peer, **refusal)
            connection.close()
            return
        self._unopened.add(connection)
        task = asyncio.create_task(self._serve_connection(peer, connection))
        self._tasks.add(task)
        self._admission.opened(address)
        task.add_done_callback(functools.partial(self._forget, address, connection))

    def _forget(
        self, address: IPAddress | None, connection: socket.socket, task: asyncio.Task[None]
    ) -> None:
        if connection in self._unopened:  # cancelled before it ran (close() at that moment)
            self._unopened.discard(connection)
            connection.close()
        self._tasks.discard(task)
        self._admission.closed(address)

    async def _open(
        self, peer: str, connection: socket.socket
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Streams over ``connection``, TLS from the first byte when on; None if refused."""
        loop = asyncio.get_running_loop()
        stream_reader = asyncio.StreamReader()
        # A StreamReaderProtocol that can hand the session its bytes in the callback that
        # received them (cardfloor.aio.inline).
        protocol = InlineReading(stream_reader)
        self._unopened.discard(connection)  # the loop owns it from here, also when it fails
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                connection,
                ssl=self._ssl,
                ssl_handshake_timeout=None if self._ssl is None else self._tls_handshake_timeout,
            )
        except (OSError, TimeoutError) as error:  # ssl.SSLError is an OSError
            event = "vscard.tls_refused" if self._ssl is not None else "vscard.connection_lost"
            self._warn(event, peer=peer, error=str(error) or repr(error))
            return None
        return stream_reader, asyncio.StreamWriter(transport, protocol, stream_reader, loop)

    async def _serve_connection(self, peer: str, connection: socket.socket) -> None:
        streams = await self._open(peer, connection)
        if streams is None:
            return
        stream_reader, stream_writer = streams
        set_nodelay(stream_writer, keepalive=True)
        session = self._new_session(stream_reader, stream_writer)
        log.info("vscard.connection_opened", peer=peer, tls=self._ssl is not None)
        reading = asyncio.create_task(session._read_loop(), name=f"vscard-read-{peer}")
        try:
            await self._handler(session)
        except Exception as error:  # one application failure closes one connection only
            log.exception("vscard.handler_failed", peer=peer, error=repr(error))
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            await session.close()
            log.info("vscard.connection_closed", peer=peer)


async def serve(
    handler: SessionHandler,
    host: str | None = None,
    port: int = 0,
    *,
    max_connections: int = 64,
    max_readers: int = DEFAULT_MAX_READERS,
    max_frame_size: int = MAX_FRAME_SIZE,
    event_queue_size: int = 64,
    ssl: SSLContext | None = None,
    allow: Sequence[IPNetwork] | None = None,
    max_connections_per_source: int | None = None,
    frame_timeout: float = 10.0,
    handshake_timeout: float | None = DEFAULT_HANDSHAKE_TIMEOUT,
    max_violations: int = DEFAULT_MAX_VIOLATIONS,
    log_limit: LogRateLimit | None = None,
    response_chain: bool = False,
    read_ahead: bool = False,
) -> Server:
    """Listen for VSCard clients on ``host`` (all interfaces when None) and ``port``.

    Each connection is answered as QEMU's ccid-card-passthru would (see
    :class:`vscard.host.HostConnection`) and handed to ``handler`` as a :class:`Session`.
    Malformed input closes that connection only. Past ``max_connections`` (or
    ``max_connections_per_source`` from one address) new connections are closed at once, and so
    are connections from addresses outside ``allow`` when it is given. With ``ssl`` (see
    :mod:`vscard.tls`) every connection is TLS; a failed handshake is logged and closed. A
    frame begun must be complete within ``frame_timeout`` seconds (a slow-loris client is
    closed). A connection must send its Init within ``handshake_timeout`` seconds (None: no
    deadline) or is closed: until then it holds a connection slot. Once it has, it may stay
    idle, with or without readers. A client that keeps breaking the protocol is closed after
    ``max_violations`` (see :class:`vscard.host.HostConnection`). Repeated warnings about peers
    go through ``log_limit`` (default: ``LogRateLimit()``, 10 lines a second per event, the
    rest counted as ``suppressed=``). With ``response_chain`` the server announces
    :attr:`~vscard.Capability.RESPONSE_CHAIN`: the handler must then answer GET RESPONSEs from
    :meth:`Session.take_response_chain` (the client has read the card's data ahead). With
    ``read_ahead`` it announces :attr:`~vscard.Capability.READ_AHEAD`: the handler must then
    answer the commands that match :meth:`Session.take_read_ahead`'s from them.

    The listen backlog holds ``max_connections`` plus headroom (cut to the system's
    ``somaxconn``, with a warning), so a storm of reconnecting clients waits in the kernel's
    queue instead of being dropped; the queue is emptied in batches of ``ACCEPTS_PER_TURN``.
    """
    server = Server(
        handler,
        max_connections=max_connections,
        max_readers=max_readers,
        max_frame_size=max_frame_size,
        event_queue_size=event_queue_size,
        ssl=ssl,
        allow=allow,
        max_connections_per_source=max_connections_per_source,
        frame_timeout=frame_timeout,
        handshake_timeout=handshake_timeout,
        max_violations=max_violations,
        log_limit=log_limit,
        response_chain=response_chain,
        read_ahead=read_ahead,
    )
    await server._listen(host, port)
    return server
