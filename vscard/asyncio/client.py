"""asyncio client: connect a card side (readers and cards) to a VSCard host such as QEMU."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from logging import DEBUG
from ssl import SSLContext
from types import CoroutineType, MappingProxyType, TracebackType
from typing import Any, Protocol

from cardfloor.aio.eager import resumed, start
from cardfloor.aio.inline import InlineReading
from cardfloor.aio.stream import READ_SIZE, peer_name, set_nodelay
from cardfloor.iso7816.apdu import more_remaining
from cardfloor.iso7816.trace import command_trace, response_trace
from cardfloor.log import Logger, get_logger

from ..client import ClientConnection
from ..constants import (
    MAX_FRAME_SIZE,
    VSCARD_MINIMAL_READER_ID,
    VSCARD_UNDEFINED_READER_ID,
    Capability,
    ErrorCode,
)
from ..errors import (
    ConnectionClosedError,
    RemoteProtocolError,
    RequestRefusedError,
    VSCardError,
)
from ..events import (
    APDURequest,
    CardResetRequested,
    ClientEvent,
    FlushRequested,
    PeerInit,
    ProtocolChanged,
    RequestAnswered,
    Unexpected,
)
from ..messages import ReadAhead
from ..read_ahead import Planner, foreseeable
from ..response_chain import Prefetch, more_to_get

log = get_logger("vscard.client")

APDUHandler = Callable[[bytes], Awaitable[bytes]]
"""Answers one command APDU with the card's response (data and SW1 SW2).

Raising makes the client send VSC_Error for that APDU instead.
"""

ResetHandler = Callable[[int], Awaitable[None]]
"""Resets the card (the host's reader powered it off and on) and sets the protocol it runs
(0 for T=0, 1 for T=1). The reader's next APDU waits until it returns. Raising makes the reader
answer every APDU with VSC_Error until its card is inserted again: a card whose reset failed
may still hold a verified PIN.
"""

ProtocolHandler = Callable[[int], Awaitable[None]]
"""Sets the protocol the host's reader runs with the card (0 for T=0, 1 for T=1)."""

_ReaderItem = APDURequest | FlushRequested | CardResetRequested | ProtocolChanged


class ReaderIdInUseError(VSCardError):
    """The host gave a new reader the id of a reader it already holds.

    Such a host holds one reader per connection, whatever the client adds: QEMU's
    ccid-card-passthru answers every ReaderAdd with reader id 0. The reader it holds keeps
    serving APDUs; the new one was not registered.
    """

    def __init__(self, name: str, reader_id: int) -> None:
        super().__init__(
            f"host gave reader {name!r} reader_id={reader_id}, the id of a reader it already "
            "holds: it holds one reader (as QEMU's ccid-card-passthru does)"
        )
        self.name = name
        self.reader_id = reader_id


#: Host APDUs queued per reader. A host sends one at a time; this bounds a misbehaving one.
_READER_QUEUE_SIZE = 8

_OnSuccess = Callable[[RequestAnswered], None]


class _Request(Protocol):
    def __call__(
        self, queue: Callable[[ClientConnection], None], on_success: _OnSuccess | None = None, /
    ) -> Awaitable[RequestAnswered]: ...


@dataclass(frozen=True, slots=True)
class _ReaderLink:
    """What a :class:`ClientReader` may do on its :class:`Client`'s connection, and nothing more."""

    conn: ClientConnection
    """Queues the reader's answers; its ``cards`` hold the reader's card."""
    request: _Request
    """Queue a request, send it and return the host's reply (a refusal raises). ``on_success``
    runs when the reply arrives, in stream order, before the host's next message is seen."""
    send: Callable[[], Awaitable[None]]
    """Write what ``conn`` queued, with backpressure."""
    forget: Callable[[int], None]
    """The reader with this id is gone: its client stops listing it."""
    log: Logger


class ClientReader:
    """A reader this client announced to the host, with the card it may hold."""

    def __init__(
        self,
        link: _ReaderLink,
        reader_id: int,
        name: str,
        transmit: APDUHandler,
        *,
        eager: bool,
        reset: ResetHandler | None = None,
        protocol: ProtocolHandler | None = None,
    ) -> None:
        self._link = link
        self._conn = link.conn
        self._cards = link.conn.cards
        self._log = link.log
        self.reader_id = reader_id
        self.name = name
        self._transmit = transmit
        self._reset = reset
        self._protocol = protocol
        # A reset failed: the card may keep what the host's power cycle should have cleared.
        self._unreset = False
        # The protocol the host's reader runs, as its last CardReset or CardProtocol said
        # (None: not told); the read-ahead asks some commands as the guest would under it.
        self._runs: int | None = None
        self._eager = eager
        self._pending: deque[_ReaderItem] = deque()
        # Held while the card works on an APDU, so a removal never cuts one off.
        self._busy = asyncio.Lock()
        # insert() and remove_card() calls holding or waiting for _busy: while there are
        # none and no worker, _busy is free and nobody waits for it (see _answer_now).
        self._changing = 0
        # Serves the pending requests; None when there are none. With ``eager`` it runs inline
        # in the read loop (start_eagerly) and is a task only while it waits: a card that
        # answers at once costs no task switch.
        self._worker: asyncio.Task[None] | None = None

    @property
    def atr(self) -> bytes | None:
        """The inserted card's ATR, as the host accepted it, or None when the reader is empty."""
        return self._cards.get(self.reader_id)

    async def insert(self, atr: bytes) -> None:
        """Announce a card (or a reset of it) with its ATR. The host may refuse the ATR."""
        self._changing += 1
        try:
            async with self._busy:
                await self._link.request(lambda c: c.insert_card(self.reader_id, atr))
                self._unreset = False
        finally:
            self._changing -= 1

    async def remove_card(self) -> None:
        """Announce that the card left, once any APDU in progress has been answered."""
        self._changing += 1
        try:
            async with self._busy:
                await self._link.request(lambda c: c.remove_card(self.reader_id))
        finally:
            self._changing -= 1

    async def remove(self) -> None:
        """Remove the card, if any, then the reader itself."""
        if self.atr is not None:
            await self.remove_card()
        await self._link.request(lambda c: c.remove_reader(self.reader_id), self._removed)

    def _removed(self, _reply: RequestAnswered) -> None:
        # At the reply, as the connection forgets the reader: its id may be given again next.
        self._link.forget(self.reader_id)
        self._stop()

    async def _accept(self, item: _ReaderItem) -> None:
        """Take a host request (from the read loop); serve it now when the reader is idle."""
        while len(self._pending) >= _READER_QUEUE_SIZE and self._worker is not None:
            # Backpressure: a host that floods one reader stops being read until it drains.
            await asyncio.wait({self._worker})
        self._pending.append(item)
        if self._worker is None:
            self._start(self._serve())

    def _start(self, serve: Coroutine[Any, Any, None]) -> None:
        """Start the reader's worker (inline with ``eager``; None again once it is done)."""
        self._worker = start(serve, eager=self._eager, name=f"vscard-reader-{self.reader_id}")

    def _stop(self) -> None:
        self._pending.clear()
        if self._worker is not None:
            self._worker.cancel()

    def _answer_now(self, apdu: bytes) -> bool:
        """Answer a host APDU in the read callback when the reader is idle; False when it is not
        (the APDU then goes through :meth:`_accept`).

        The card's ``transmit`` runs here until it first waits: a card that answers at once has
        its response queued before this returns, with no task, lock or coroutine of ours (the
        read callback writes it). One that waits goes on in the reader's worker, which holds
        ``_busy`` as :meth:`_serve` does and takes the APDUs that arrive meanwhile after it.
        Idle means what :meth:`_serve` would find: no worker, ``_busy`` free with nobody
        waiting for it, and a card whose reset did not fail (that refusal stays in
        :meth:`_answer`). A ``61xx`` answer the host takes a ResponseChain for goes on in the
        worker too (the prefetch may wait).
        """
        if self._worker is not None or self._changing or self._unreset or not self._eager:
            return False
        log = self._log
        debug = log.is_enabled_for(DEBUG)
        if debug:
            log.debug("vscard.apdu", reader_id=self.reader_id, command=command_trace(apdu))
        waiting: Awaitable[bytes]
        try:
            answer = self._transmit(apdu)
            if type(answer) is CoroutineType:
                waiting = resumed(answer, answer.send(None))
            else:
                waiting = answer  # another awaitable: the worker awaits it
        except StopIteration as done:
            response: bytes = done.value
        except Exception as error:  # the card's failure must not end the client
            log.warning("vscard.apdu_failed", reader_id=self.reader_id, error=repr(error))
            self._conn.send_failure(self.reader_id, ErrorCode.GENERAL_ERROR)
            return True
        else:
            # The card waits (a thread, a PC/SC hold): the reader's worker takes it from here.
            self._start(self._serve(apdu, waiting, debug))
            return True
        # The cheap checks first: the connection's properties combine capability flags.
        if (more_to_get(response) and self._conn.response_chain) or (
            foreseeable(apdu, response) and self._conn.read_ahead
        ):
            # The prefetch and the read-ahead may wait: the worker goes on.
            self._start(self._serve(apdu, _answered(response), debug))
            return True
        if debug:
            log.debug("vscard.apdu", reader_id=self.reader_id, response=response_trace(response))
        self._conn.send_response(self.reader_id, response)
        return True

    async def _serve(
        self, apdu: bytes = b"", answer: Awaitable[bytes] | None = None, debug: bool = False
    ) -> None:
        """Serve the pending requests, after ``answer``: the card's answer to ``apdu``, which
        :meth:`_answer_now` started."""
        send = self._link.send
        try:
            if answer is not None:
                # First, as _answer_now found it: free, nobody waiting.
                async with self._busy:
                    await self._answered(apdu, answer, debug)
                await send()
            while self._pending:
                item = self._pending.popleft()
                async with self._busy:
                    if isinstance(item, APDURequest):
                        await self._answer(item.apdu)
                    elif isinstance(item, FlushRequested):
                        self._conn.send_flush_complete(self.reader_id)
                    elif isinstance(item, CardResetRequested):
                        await self._card_reset(item.protocol)
                    else:
                        await self._set_protocol(item.protocol)
                await send()
        finally:
            self._worker = None

    async def _card_reset(self, protocol: int) -> None:
        self._runs = protocol
        log = self._log
        if self._reset is None:
            log.debug("vscard.card_reset_ignored", reader_id=self.reader_id, protocol=protocol)
            return
        log.info("vscard.card_reset", reader_id=self.reader_id, protocol=protocol)
        try:
            await self._reset(protocol)
        except Exception as error:  # the card's failure must not end the client
            log.warning("vscard.card_reset_failed", reader_id=self.reader_id, error=repr(error))
            self._unreset = True
        else:
            self._unreset = False

    async def _set_protocol(self, protocol: int) -> None:
        self._runs = protocol
        self._log.info("vscard.card_protocol", reader_id=self.reader_id, protocol=protocol)
        if self._protocol is None:
            return
        try:
            await self._protocol(protocol)
        except Exception as error:  # the card's failure must not end the client
            self._log.warning(
                "vscard.card_protocol_failed", reader_id=self.reader_id, error=repr(error)
            )

    async def _answer(self, apdu: bytes) -> None:
        log = self._log
        debug = log.is_enabled_for(DEBUG)  # the traces cost more than the check
        if debug:
            log.debug("vscard.apdu", reader_id=self.reader_id, command=command_trace(apdu))
        if self._unreset:
            log.warning("vscard.apdu_refused", reader_id=self.reader_id, reason="reset failed")
            self._conn.send_failure(self.reader_id, ErrorCode.GENERAL_ERROR)
            return
        try:
            answer = self._transmit(apdu)
        except Exception as error:  # the card's failure must not end the client
            log.warning("vscard.apdu_failed", reader_id=self.reader_id, error=repr(error))
            self._conn.send_failure(self.reader_id, ErrorCode.GENERAL_ERROR)
            return
        await self._answered(apdu, answer, debug)

    async def _answered(self, apdu: bytes, answer: Awaitable[bytes], debug: bool) -> None:
        """Queue the card's ``answer`` to ``apdu`` (a failure: VSC_Error), after the rest of
        a ``61xx`` answer when the host takes a ResponseChain."""
        log = self._log
        try:
            response = await answer
        except Exception as error:  # the card's failure must not end the client
            log.warning("vscard.apdu_failed", reader_id=self.reader_id, error=repr(error))
            self._conn.send_failure(self.reader_id, ErrorCode.GENERAL_ERROR)
        else:
            if debug:
                log.debug(
                    "vscard.apdu", reader_id=self.reader_id, response=response_trace(response)
                )
            whole: bytes | None = response
            if more_to_get(response):
                whole = await self._prefetch(apdu, response)
            if whole is not None and foreseeable(apdu, response) and self._conn.read_ahead:
                await self._read_ahead(apdu, whole)
            self._conn.send_response(self.reader_id, response)

    async def _prefetch(self, apdu: bytes, response: bytes) -> bytes | None:
        """Read a ``61xx`` answer's rest ahead and queue it as a ResponseChain, when the host
        takes one (see :mod:`vscard.response_chain`). Returns the whole answer (see
        :func:`_whole`) when the chain is complete, else None.

        It runs in the reader's worker right after the answer, before anything else reaches the
        card: for a shared PC/SC card, inside the guest's hold that the answer renewed.
        """
        if not self._conn.response_chain:
            return None
        chain = await self._read_chain(apdu, response)
        if chain is None:
            return None
        data, sw = chain
        self._conn.send_response_chain(self.reader_id, data, sw)
        return _whole(response, data, sw)

    async def _read_chain(self, apdu: bytes, response: bytes) -> tuple[bytes, int] | None:
        """The GET RESPONSEs after ``response`` to ``apdu``: their data and last status word,
        within :class:`~vscard.response_chain.Prefetch`'s bounds; None when none was answered.

        A card that fails partway leaves a chain cut short, ending with the last ``61xx`` it
        gave: the host answers the guest from what was read, and sends the card a GET RESPONSE
        for the rest, which the card's own answer to it then decides."""
        prefetch = Prefetch()
        command = prefetch.start(apdu, response)
        try:
            while command is not None:
                command = prefetch.step(await self._transmit(command))
        except Exception as error:  # the card's failure: the host's GET RESPONSEs will see it
            self._log.debug("vscard.prefetch_failed", reader_id=self.reader_id, error=repr(error))
        return None if prefetch.sw is None else (prefetch.data, prefetch.sw)

    async def _read_ahead(self, apdu: bytes, answer: bytes) -> None:
        """Send the card the commands the host's guest is likely to send after ``apdu`` and
        queue each answer as a ReadAhead (see :mod:`vscard.read_ahead`), within its bounds.

        As :meth:`_prefetch`, in the reader's worker before the response, so inside the
        guest's PC/SC hold; ``answer`` is the card's whole answer to ``apdu``. A read-ahead
        whose own chain does not complete ends it: the host could not answer its GET RESPONSEs.
        """
        planner = Planner(protocol=self._runs)
        command = planner.start(apdu, answer)
        reader_id = self.reader_id
        log = self._log
        debug = log.is_enabled_for(DEBUG)
        try:
            while command is not None:
                response = await self._transmit(command)
                if debug:
                    log.debug(
                        "vscard.read_ahead",
                        reader_id=reader_id,
                        command=command_trace(command),
                        response=response_trace(response),
                    )
                whole = response
                if more_to_get(response):
                    chain = await self._read_chain(command, response)
                    joined = None if chain is None else _whole(response, *chain)
                    if chain is None or joined is None:
                        return
                    entry = ReadAhead(reader_id, command, response, *chain)
                    whole = joined
                else:
                    entry = ReadAhead(reader_id, command, response)
                if not planner.take(entry):
                    return
                self._conn.send_read_ahead(entry)
                command = planner.step(command, whole)
        except Exception as error:  # the card's failure: the guest's own command will see it
            log.debug("vscard.read_ahead_failed", reader_id=reader_id, error=repr(error))


def _whole(response: bytes, chain: bytes, sw: int) -> bytes | None:
    """The card's whole answer: the data of a ``61xx`` ``response`` (T=1 response chaining
    gives some), then the ``chain`` read after it and its last status word ``sw``; None when
    the chain was cut short (``sw`` is ``61xx``)."""
    if more_remaining(sw):
        return None
    return response[:-2] + chain + sw.to_bytes(2, "big")


async def _answered(response: bytes) -> bytes:
    """A response the card gave already, as an awaitable like its ``transmit``."""
    return response


class Client:
    """A connection to a VSCard host. Create it with :func:`connect`."""

    def __init__(
        self,
        stream_reader: asyncio.StreamReader,
        stream_writer: asyncio.StreamWriter,
        *,
        timeout: float,
        max_frame_size: int,
        card_reset: bool = True,
        inline: InlineReading | None = None,
        response_chain: bool = True,
        read_ahead: bool = True,
    ) -> None:
        self._stream_reader = stream_reader
        # The connection's protocol when it is an InlineReading (as connect() makes): frames
        # are then handled in the callback that received them (see _read_loop).
        self._inline_reading = inline
        self._writer = stream_writer
        self._transport = stream_writer.transport  # _take writes to it directly
        self._timeout = timeout
        self._conn = ClientConnection(
            max_frame_size=max_frame_size,
            capabilities=(Capability.CARD_RESET if card_reset else Capability(0))
            | (Capability.RESPONSE_CHAIN if response_chain else Capability(0))
            | (Capability.READ_AHEAD if read_ahead else Capability(0)),
        )
        self._replies: deque[tuple[asyncio.Future[RequestAnswered], _OnSuccess | None]] = deque()
        self._readers: dict[int, ClientReader] = {}
        self._peer_init: asyncio.Future[PeerInit] = asyncio.get_running_loop().create_future()
        self._closed = asyncio.Event()
        self._error: BaseException | None = None
        self.peer = peer_name(stream_writer)
        self._log = log.bind(peer=self.peer)
        self._link = _ReaderLink(self._conn, self._request, self._flush, self._forget, self._log)
        self._read_task = asyncio.create_task(self._read_loop(), name="vscard-client-read")

    @property
    def readers(self) -> Mapping[int, ClientReader]:
        """Readers the host accepted, by the id it assigned."""
        return MappingProxyType(self._readers)

    @property
    def one_reader_host(self) -> bool:
        """True once the host gave a ReaderAdd the id of a reader it holds (see
        :class:`ReaderIdInUseError`): it holds one reader, as QEMU's ccid-card-passthru does."""
        return self._conn.one_reader_host

    @property
    def card_reset(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.CARD_RESET`: the host tells
        each reader's ``reset`` and ``protocol`` handlers what its reader does to the card."""
        return self._conn.card_reset

    @property
    def response_chain(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.RESPONSE_CHAIN`: a ``61xx``
        answer's rest is read from the card at once and sent ahead of it."""
        return self._conn.response_chain

    @property
    def read_ahead(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.READ_AHEAD`: after an answer
        that foretells the host's next commands, the card is sent them at once and the answers
        go to the host ahead of that answer."""
        return self._conn.read_ahead

    @property
    def host_version(self) -> int | None:
        """The protocol version in the host's Init."""
        return self._conn.peer_version

    @property
    def closed(self) -> bool:
        """True once the connection is gone."""
        return self._closed.is_set()

    async def add_reader(
        self,
        name: str = "",
        *,
        transmit: APDUHandler,
        eager: bool = False,
        reset: ResetHandler | None = None,
        protocol: ProtocolHandler | None = None,
    ) -> ClientReader:
        """Announce a reader; ``transmit`` will answer the APDUs the host sends to its card.

        ``reset`` (see :data:`ResetHandler`) and ``protocol`` run when a host that knows our
        extension (:attr:`card_reset`) powers the card off and on or changes the protocol, in
        order with the reader's APDUs. Without ``reset`` a reset changes nothing.

        ``transmit`` runs in a task of its own. With ``eager`` it starts inline in the
        connection's read loop instead and becomes a task only if it has to wait (no task
        switch for a card that answers at once): only for a ``transmit`` that does not use
        :func:`asyncio.current_task` before its first wait (``asyncio.timeout`` and
        ``asyncio.TaskGroup`` do), since that would be the read loop's task (see
        :mod:`cardfloor.aio.eager`).

        Raises :class:`ReaderIdInUseError` when the host answers with the id of a reader it
        already holds: that reader stays as it is, with its own ``transmit``.
        """
        reader = ClientReader(
            self._link,
            VSCARD_UNDEFINED_READER_ID,
            name,
            transmit,
            eager=eager,
            reset=reset,
            protocol=protocol,
        )

        def register(reply: RequestAnswered) -> None:
            # At the reply, as the connection learns the reader: the host may use it next.
            if reply.reader_id not in self._readers:
                reader.reader_id = reply.reader_id
                self._readers[reply.reader_id] = reader

        reply = await self._request(lambda c: c.add_reader(name), register)
        if self._readers.get(reply.reader_id) is not reader:
            self._log.info("vscard.one_reader_host", reader_id=reply.reader_id, name=name)
            raise ReaderIdInUseError(name, reply.reader_id)
        self._log.info("vscard.reader_added", reader_id=reply.reader_id, name=name)
        return reader

    async def close(self) -> None:
        """Remove every card and reader (politely, as QEMU expects), then close the socket."""
        if not self.closed:
            with contextlib.suppress(VSCardError, TimeoutError, OSError):
                for reader in list(self._readers.values()):
                    await reader.remove()
        await self._shutdown(None)

    async def wait_closed(self) -> None:
        """Wait until the host closes the connection (or :meth:`close` is called)."""
        await self._closed.wait()
        if self._error is not None:
            raise self._error

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals ------------------------------------------------------------------------

    async def _handshake(self, *, reset: bool) -> None:
        self._conn.send_init()
        await self._flush()
        try:
            async with asyncio.timeout(self._timeout):
                init = await asyncio.shield(self._peer_init)
        except TimeoutError as error:
            await self._shutdown(TimeoutError("host sent no Init"))
            # Named: compiled by mypyc (docs/compiled.md), a bare raise after this await
            # raised a corrupt object ("TypeError: invalid exception object", then a crash).
            raise error
        self._log.info(
            "vscard.connected",
            version=init.version,
            card_reset=self.card_reset,
            response_chain=self.response_chain,
            read_ahead=self.read_ahead,
        )
        if reset:
            # QEMU keeps a card across reconnects; forget whatever the last client left there.
            await self._request(lambda c: c.remove_reader(VSCARD_MINIMAL_READER_ID))

    async def _request(
        self, queue: Callable[[ClientConnection], None], on_success: _OnSuccess | None = None, /
    ) -> RequestAnswered:
        if self.closed:
            raise ConnectionClosedError("connection to the VSCard host is closed")
        queue(self._conn)
        future: asyncio.Future[RequestAnswered] = asyncio.get_running_loop().create_future()
        self._replies.append((future, on_success))
        await self._flush()
        try:
            async with asyncio.timeout(self._timeout):
                reply = await asyncio.shield(future)
        except TimeoutError as error:
            # Replies carry no id: once one is missing, later ones cannot be paired.
            await self._shutdown(TimeoutError("host did not answer a request"))
            raise error  # named, as in _handshake
        if reply.code != ErrorCode.SUCCESS:
            raise RequestRefusedError(
                type(reply.request).__name__, reply.request.reader_id, reply.code
            )
        return reply

    async def _flush(self) -> None:
        data = self._conn.data_to_send()
        if data and not self._writer.is_closing():
            self._writer.write(data)
            await self._writer.drain()

    def _forget(self, reader_id: int) -> None:
        self._readers.pop(reader_id, None)

    def _take(self, data: bytes) -> Coroutine[Any, Any, None] | None:
        """Handle the host's bytes: at once (None) while every message is an APDU that its
        idle reader's card answers without waiting (one write for all answers), else a
        coroutine for the rest (:meth:`_receive`)."""
        conn = self._conn
        events = conn.receive_data(data)
        readers = self._readers
        for index, event in enumerate(events):
            if type(event) is APDURequest and readers[event.reader_id]._answer_now(event.apdu):
                continue
            return self._receive(events, index)
        data = conn.data_to_send()
        transport = self._transport
        if data and not transport.is_closing():
            transport.write(data)
            if transport.get_write_buffer_size():
                # Not all sent: drain() applies backpressure (as _flush does).
                return self._receive(events, len(events), drain=True)
        if conn.error is not None:  # a bad frame after the good ones
            raise conn.error
        return None

    async def _receive(self, events: list[ClientEvent], start: int, *, drain: bool = False) -> None:
        if drain:
            await self._writer.drain()
        for event in events[start:]:
            await self._dispatch(event)
        await self._flush()
        if self._conn.error is not None:  # a bad frame after the good ones
            raise self._conn.error

    async def _read(self) -> bytes:
        if self._inline_reading is not None:
            # What arrives while this waits is handled at once (_take, in the callback): no
            # task wake-up between a host's APDU and the card, nor a loop turn.
            return await self._inline_reading.read(READ_SIZE, self._take)
        return await self._stream_reader.read(READ_SIZE)

    async def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while data := await self._read():
                rest = self._take(data)
                if rest is not None:
                    await rest
            self._log.info("vscard.disconnected")
        except RemoteProtocolError as exc:
            self._log.warning(
                "vscard.protocol_error", field=exc.field, value=repr(exc.value), error=str(exc)
            )
            error = exc
        except OSError as exc:
            self._log.warning("vscard.connection_lost", error=repr(exc))
        await self._shutdown(error, from_reader=True)

    async def _dispatch(self, event: ClientEvent) -> None:
        match event:
            case PeerInit():
                if not self._peer_init.done():
                    self._peer_init.set_result(event)
            case RequestAnswered(_, _, code):
                future, on_success = self._replies.popleft()
                if on_success is not None and code == ErrorCode.SUCCESS:
                    on_success(event)  # also when its caller gave up: the host did it
                if not future.done():
                    future.set_result(event)
            case (
                APDURequest(reader_id)
                | FlushRequested(reader_id)
                | CardResetRequested(reader_id)
                | ProtocolChanged(reader_id)
            ):
                # The connection answers those for readers it does not know; it learns and
                # forgets them at the same replies as self._readers (see _request).
                await self._readers[reader_id]._accept(event)
            case Unexpected(message, reason):
                self._log.warning("vscard.unexpected", message=repr(message), reason=reason)

    async def _shutdown(self, error: BaseException | None, *, from_reader: bool = False) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._error = error
        if not from_reader:
            self._read_task.cancel()
        for reader in self._readers.values():
            reader._stop()
        closed = ConnectionClosedError("connection to the VSCard host closed")
        futures: list[asyncio.Future[PeerInit] | asyncio.Future[RequestAnswered]]
        futures = [self._peer_init, *(future for future, _ in self._replies)]
        for future in futures:
            if not future.done():
                future.set_exception(closed)
                future.exception()  # mark retrieved: nobody may be waiting any more
        self._replies.clear()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def connect(
    host: str,
    port: int,
    *,
    timeout: float = 10.0,
    reset: bool = True,
    max_frame_size: int = MAX_FRAME_SIZE,
    ssl: SSLContext | None = None,
    server_hostname: str | None = None,
    card_reset: bool = True,
    response_chain: bool = True,
    read_ahead: bool = True,
) -> Client:
    """Connect to a VSCard host (QEMU's ccid-card-passthru, or :func:`vscard.serve`).

    Sends Init and waits for the host's (QEMU's own unsolicited one is usually lost), then,
    with ``reset``, sends ReaderRemove(0) so state a previous client left behind is cleared.
    ``host`` may be a name, an IPv4 or an IPv6 address. Each step waits at most ``timeout``
    seconds. With ``ssl`` (see :mod:`vscard.tls`) the channel is TLS; the host's certificate
    must match ``server_hostname`` (default: ``host``). With ``card_reset`` our Init announces
    :attr:`~vscard.Capability.CARD_RESET` (QEMU ignores it; our ccid-passthru then tells each
    reader's ``reset`` handler of the importer's power cycles, see :meth:`Client.add_reader`).
    With ``response_chain`` it announces :attr:`~vscard.Capability.RESPONSE_CHAIN`: with a
    host that announces it too (our ccid-passthru), a card's ``61xx`` answer is followed at
    once by GET RESPONSEs to the card and its data go to the host in one message. With
    ``read_ahead`` it announces :attr:`~vscard.Capability.READ_AHEAD`: with a host that
    announces it too, an answer that foretells the next reads (a ``6Cxx``, a CAC buffer's
    length) is followed at once by those reads, and their answers go to the host with it
    (see :mod:`vscard.read_ahead`).
    """
    loop = asyncio.get_running_loop()
    # asyncio.open_connection's streams, with a protocol that hands the read loop's bytes to
    # it in the callback that received them (cardfloor.aio.inline).
    stream_reader = asyncio.StreamReader()
    protocol = InlineReading(stream_reader)
    async with asyncio.timeout(timeout):
        transport, _ = await loop.create_connection(
            lambda: protocol,
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname if ssl is not None else None,
        )
    stream_writer = asyncio.StreamWriter(transport, protocol, stream_reader, loop)
    set_nodelay(stream_writer, keepalive=True)
    client = Client(
        stream_reader,
        stream_writer,
        timeout=timeout,
        max_frame_size=max_frame_size,
        card_reset=card_reset,
        inline=protocol,
        response_chain=response_chain,
        read_ahead=read_ahead,
    )
    await client._handshake(reset=reset)
    return client
