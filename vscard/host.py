"""Sans-IO host side: what QEMU's ``ccid-card-passthru`` does with a VSCard client.

The host uses the client's cards. It answers every request the way QEMU 7.2 does
(``ccid_card_vscard_handle_message`` in QEMU's ``hw/usb/ccid-card-passthru.c``) with these
deliberate differences, all in the client's favour:

- ReaderAdd gets a fresh reader id (the lowest free one from 0) instead of always 0, so one
  connection can carry several readers; past ``max_readers`` it gets CANNOT_ADD_MORE_READERS.
- ATR and CardRemove for a reader that was never added get GENERAL_ERROR (QEMU accepts any id).
  ReaderRemove of an unknown reader still succeeds: vscclient sends ReaderRemove(0) after every
  Init to clear stale state.
- The ATR check walks the whole TDi chain (:func:`vscard.atr.atr_problem`).
- A response is matched to its reader, never to "the oldest request"; a response nobody asked
  for is dropped and reported. The late answer to an APDU that a card removal or reset
  aborted is dropped quietly: the client may send it before it learns of the removal.
- A client that keeps breaking the protocol is cut off (see ``max_violations``), and one call
  handles at most ``max_messages`` frames (see :attr:`HostConnection.pending`).

Our extension: the host's Init announces :attr:`~vscard.Capability.CARD_RESET` (unless told
not to); once the client's Init announced it too (:attr:`HostConnection.card_reset`),
:meth:`HostConnection.send_card_reset` and :meth:`HostConnection.send_card_protocol` tell the
client what the host's reader did to the card. QEMU's and libcacard's clients announce nothing
and never see either message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NoReturn

from cardfloor.iso7816.apdu import more_remaining

from .atr import atr_problem
from .codec import Decoder, encode
from .constants import (
    MAX_FRAME_SIZE,
    VSCARD_MINIMAL_READER_ID,
    Capability,
    ErrorCode,
    TransmissionProtocol,
)
from .errors import (
    LocalProtocolError,
    NoCardError,
    ReaderBusyError,
    RemoteProtocolError,
    UnknownReaderError,
)
from .events import (
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
from .messages import (
    APDU,
    ATR,
    CardProtocol,
    CardRemove,
    CardReset,
    Error,
    Flush,
    FlushComplete,
    Init,
    Message,
    ReadAhead,
    ReaderAdd,
    ReaderRemove,
    ResponseChain,
)
from .read_ahead import MAX_READ_AHEAD, MAX_READ_AHEAD_BYTES

_KNOWN = int(Capability.CARD_RESET | Capability.RESPONSE_CHAIN | Capability.READ_AHEAD)

DEFAULT_MAX_READERS = 16
#: Protocol violations a connection may commit beyond those its answered APDUs paid back.
DEFAULT_MAX_VIOLATIONS = 32


@dataclass(slots=True)
class HostReader:
    """A reader the client added, as the host sees it."""

    reader_id: int
    name: str
    atr: bytes | None = None
    apdu_in_flight: bool = False
    flush_in_flight: bool = False
    chain: ResponseChain | None = None
    """The ResponseChain received for the APDU in flight, until its response."""
    read_ahead: list[ReadAhead] = field(default_factory=list)
    """The ReadAheads received for the APDU in flight, until its response."""
    read_ahead_bytes: int = 0

    @property
    def card_present(self) -> bool:
        return self.atr is not None


class HostConnection:
    """One VSCard connection, seen from the host. Feed it bytes, read events and bytes back.

    Every :class:`Unexpected` it reports is a protocol violation (a response with no APDU in
    flight, an ATR or CardRemove for a reader never added, a bad ATR, a ReaderAdd past
    ``max_readers``, a second Init, a message only a host sends), and each answered APDU pays
    one back. Past ``max_violations`` unpaid ones the connection fails with a
    :class:`RemoteProtocolError` naming the last one's field and value. A well-behaved client
    commits one per user action at most (a card with a bad ATR, a reader too many) and its
    card's use pays them back, so it never runs out however long it lives; a peer that only
    breaks the protocol is cut off after a few dozen frames instead of being logged forever.
    The one race a good client can hit (its answer to an APDU crossing its own CardRemove or
    ATR) is not a violation.

    With ``max_messages``, one :meth:`receive_data` call handles at most that many frames and
    keeps the rest: while :attr:`pending`, call ``receive_data(b"")`` for the next batch.
    """

    def __init__(
        self,
        *,
        max_readers: int = DEFAULT_MAX_READERS,
        max_frame_size: int = MAX_FRAME_SIZE,
        max_violations: int = DEFAULT_MAX_VIOLATIONS,
        max_messages: int | None = None,
        capabilities: int = Capability.CARD_RESET,
    ) -> None:
        if max_readers < 1:
            raise ValueError(f"max_readers={max_readers} must be at least 1")
        if max_violations < 0:
            raise ValueError(f"max_violations={max_violations} must not be negative")
        self._decoder = Decoder(max_frame_size=max_frame_size, max_messages=max_messages)
        self._max_frame_size = max_frame_size
        self._max_readers = max_readers
        self._max_violations = max_violations
        self._violations = 0
        self._initialized = False
        self._readers: dict[int, HostReader] = {}
        # Readers whose APDU was aborted: the client's answer to it may still come.
        self._aborted: set[int] = set()
        self._outgoing = bytearray()
        self._capabilities = Capability(capabilities)
        self._peer_capabilities = Capability(0)
        # Asked before every APDU a passthru forwards: kept, not recomputed with flag
        # arithmetic; it changes only at the client's (one) Init.
        self._card_reset = False
        self._response_chain = False
        self._read_ahead = False

    @property
    def capabilities(self) -> Capability:
        """What our Init announces."""
        return self._capabilities

    @property
    def peer_capabilities(self) -> Capability:
        """Our bits among those the client's Init announced (none until it arrived)."""
        return self._peer_capabilities

    @property
    def card_reset(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.CARD_RESET`."""
        return self._card_reset

    @property
    def response_chain(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.RESPONSE_CHAIN`: responses
        may come with a chain (:attr:`APDUResponse.chain`)."""
        return self._response_chain

    @property
    def read_ahead(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.READ_AHEAD`: responses may
        come with ReadAheads (:attr:`APDUResponse.read_ahead`)."""
        return self._read_ahead

    @property
    def buffered(self) -> int:
        """Bytes received and not yet handled: an incomplete frame, or frames :attr:`pending`."""
        return self._decoder.buffered

    @property
    def pending(self) -> bool:
        """True when a call stopped at ``max_messages``: ``receive_data(b"")`` handles more."""
        return self._decoder.pending

    @property
    def violations(self) -> int:
        """Protocol violations not paid back by answered APDUs (see the class)."""
        return self._violations

    @property
    def error(self) -> RemoteProtocolError | None:
        """The :class:`vscard.RemoteProtocolError` the client's bytes caused, or None.

        Set when :meth:`receive_data` raises it, and also when a call returns the events of
        the good frames that came before a bad one: act on those events, then close the
        connection with this error. Once set, every :meth:`receive_data` raises it.
        """
        return self._decoder.error

    @property
    def readers(self) -> Mapping[int, HostReader]:
        """The client's readers by id (read-only view)."""
        return MappingProxyType(self._readers)

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes queued for the peer."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def send_init(self) -> None:
        """Queue the host's Init (QEMU sends one when its device is realized)."""
        self._send(self._init())

    def send_apdu(self, reader_id: int, apdu: bytes) -> None:
        """Queue a command APDU for the card in ``reader_id``; its answer comes as an event.

        Raises :class:`UnknownReaderError`, :class:`NoCardError` or, while an earlier APDU on
        that reader is unanswered, :class:`ReaderBusyError` (each a
        :class:`~vscard.LocalProtocolError`; nothing is queued then).
        """
        reader = self._reader(reader_id)
        if reader.atr is None:
            raise NoCardError(reader_id)
        if reader.apdu_in_flight:
            raise ReaderBusyError(reader_id)
        self._send(APDU(reader_id, apdu))
        reader.apdu_in_flight = True

    def send_card_reset(self, reader_id: int, protocol: int = TransmissionProtocol.T0) -> None:
        """Queue a CardReset: the reader powered the card off and on, and runs ``protocol``.

        The client finishes the reset before it handles the next APDU on the reader, so the
        host need not wait. Raises :class:`~vscard.LocalProtocolError` (field
        ``capabilities``) unless :attr:`card_reset`, :class:`UnknownReaderError` or
        :class:`NoCardError`; nothing is queued then.
        """
        self._extension_reader(reader_id)
        self._send(CardReset(reader_id, protocol))

    def send_card_protocol(self, reader_id: int, protocol: int) -> None:
        """Queue a CardProtocol: the reader now runs ``protocol`` with the card, no reset.

        Raises as :meth:`send_card_reset`.
        """
        self._extension_reader(reader_id)
        self._send(CardProtocol(reader_id, protocol))

    def send_flush(self, reader_id: int) -> None:
        """Queue a Flush; :class:`FlushCompleted` reports the answer.

        Raises :class:`UnknownReaderError` (a :class:`~vscard.LocalProtocolError`).
        """
        reader = self._reader(reader_id)
        self._send(Flush(reader_id))
        reader.flush_in_flight = True

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[HostEvent]:
        """Consume bytes from the client; queue replies and return what happened.

        Raises :class:`vscard.RemoteProtocolError` on malformed input or past
        ``max_violations``; the connection must then close. When good frames come before the
        bad one, their events (and replies) are returned instead and :attr:`error` holds the
        error: check it after acting on them.
        """
        events: list[HostEvent] = []
        try:
            for message in self._decoder.feed(data):
                self._handle(message, events)
        except RemoteProtocolError:  # the decoder's (nothing handled yet) or _violation's
            if events:
                return events
            raise
        return events

    # -- internals ------------------------------------------------------------------------

    def _reader(self, reader_id: int) -> HostReader:
        try:
            return self._readers[reader_id]
        except KeyError:
            raise UnknownReaderError(reader_id) from None

    def _init(self) -> Init:
        return Init(capabilities=(int(self.capabilities),))

    def _extension_reader(self, reader_id: int) -> None:
        if not self.card_reset:
            raise LocalProtocolError(
                "the client did not announce Capability.CARD_RESET"
                if self.capabilities & Capability.CARD_RESET
                else "this host does not announce Capability.CARD_RESET",
                field="capabilities",
                value=int(self.peer_capabilities),
            )
        if self._reader(reader_id).atr is None:
            raise NoCardError(reader_id)

    def _send(self, message: Message) -> None:
        self._outgoing += encode(message, max_frame_size=self._max_frame_size)

    def _reply(self, reader_id: int, code: ErrorCode) -> None:
        self._send(Error(reader_id, code))

    def _violation(
        self, message: Message, reason: str, field: str, value: object, events: list[HostEvent]
    ) -> None:
        """Report ``message`` as :class:`Unexpected`, or fail once the budget is spent."""
        self._violations += 1
        if self._violations > self._max_violations:
            error = RemoteProtocolError(
                f"{reason} (more than max_violations={self._max_violations} unpaid protocol "
                "violations)",
                field=field,
                value=value,
            )
            self._decoder.fail(error)  # the frames after it are never handled
            raise error
        events.append(Unexpected(message, reason))

    def _unanswerable(self, message: APDU | Error, events: list[HostEvent]) -> None:
        """An answer with no APDU in flight: the tail of an abort race, or a violation."""
        if message.reader_id in self._aborted:
            self._aborted.discard(message.reader_id)
            return
        name = type(message).__name__
        reason = "no APDU in flight on this reader"
        self._violation(message, reason, f"{name}.reader_id", message.reader_id, events)

    def _handle(self, message: Message, events: list[HostEvent]) -> None:
        reader = self._readers.get(message.reader_id)
        match message:
            case APDU(reader_id, data):
                if reader is None or not reader.apdu_in_flight:
                    self._unanswerable(message, events)
                    return
                reader.apdu_in_flight = False
                if self._violations:
                    self._violations -= 1
                chain = reader.chain
                if chain is None and not reader.read_ahead:
                    events.append(APDUResponse(reader_id, data))
                else:
                    ahead = tuple(reader.read_ahead)
                    self._forget_extras(reader)
                    events.append(APDUResponse(reader_id, data, chain, ahead))
            case Error(reader_id, code):
                if reader is None or not reader.apdu_in_flight:
                    self._unanswerable(message, events)
                    return
                reader.apdu_in_flight = False
                self._forget_extras(reader)
                if self._violations:
                    self._violations -= 1
                events.append(APDUFailed(reader_id, code))
            case Init(_, version, capabilities):
                self._send(self._init())  # every Init is answered, as QEMU does
                if self._initialized:
                    reason = "Init already received"
                    self._violation(message, reason, "Init.version", version, events)
                    return
                self._initialized = True
                peer = self._peer_capabilities = Capability(capabilities[0] & _KNOWN)
                self._card_reset = bool(self._capabilities & peer & Capability.CARD_RESET)
                self._response_chain = bool(self._capabilities & peer & Capability.RESPONSE_CHAIN)
                self._read_ahead = bool(self._capabilities & peer & Capability.READ_AHEAD)
                events.append(PeerInit(version, capabilities))
            case ReaderAdd(request_id, name):
                if len(self._readers) >= self._max_readers:
                    self._reply(request_id, ErrorCode.CANNOT_ADD_MORE_READERS)
                    reason = f"max_readers={self._max_readers} reached"
                    self._violation(message, reason, "readers", len(self._readers), events)
                    return
                reader_id = VSCARD_MINIMAL_READER_ID
                while reader_id in self._readers:
                    reader_id += 1
                self._readers[reader_id] = HostReader(reader_id, name)
                self._reply(reader_id, ErrorCode.SUCCESS)
                events.append(ReaderAdded(reader_id, name))
            case ReaderRemove(reader_id):
                if reader is not None:
                    self._remove_card(reader, events)
                    del self._readers[reader_id]
                    events.append(ReaderRemoved(reader_id))
                self._reply(reader_id, ErrorCode.SUCCESS)
            case ATR(reader_id, atr):
                if reader is None:
                    self._reply(reader_id, ErrorCode.GENERAL_ERROR)
                    self._violation(message, "no such reader", "ATR.reader_id", reader_id, events)
                    return
                problem = atr_problem(atr)
                if problem is not None:
                    self._reply(reader_id, ErrorCode.GENERAL_ERROR)
                    self._violation(message, problem, "ATR.atr", atr, events)
                    return
                self._abort_apdu(reader, events)
                reader.atr = atr
                self._reply(reader_id, ErrorCode.SUCCESS)
                events.append(CardInserted(reader_id, atr))
            case CardRemove(reader_id):
                if reader is None:
                    self._reply(reader_id, ErrorCode.GENERAL_ERROR)
                    reason = "no such reader"
                    self._violation(message, reason, "CardRemove.reader_id", reader_id, events)
                    return
                self._remove_card(reader, events)
                self._reply(reader_id, ErrorCode.SUCCESS)
            case CardReset() | CardProtocol() if not self.card_reset:
                self._unannounced(message, "is a host's message, and needs", "CARD_RESET")
            case ResponseChain(reader_id) if not self._response_chain:
                self._unannounced(message, "needs", "RESPONSE_CHAIN")
            case ResponseChain(reader_id):
                if reader is None or not reader.apdu_in_flight:
                    self._unanswerable_chain(message, events)
                    return
                reader.chain = message
            case ReadAhead(reader_id) if not self._read_ahead:
                self._unannounced(message, "needs", "READ_AHEAD")
            case ReadAhead(reader_id):
                if reader is None or not reader.apdu_in_flight:
                    self._unanswerable_chain(message, events)
                    return
                self._take_read_ahead(reader, message, events)
            case FlushComplete(reader_id) if reader is not None and reader.flush_in_flight:
                reader.flush_in_flight = False
                events.append(FlushCompleted(reader_id))
            case _:
                self._reply(message.reader_id, ErrorCode.GENERAL_ERROR)
                reason = (
                    "no Flush in flight on this reader"
                    if isinstance(message, FlushComplete)
                    else "not a message a client sends"
                )
                self._violation(message, reason, "header.type", message.TYPE, events)

    def _unannounced(self, message: Message, needs: str, capability: str) -> NoReturn:
        """``message`` belongs to an extension the Inits did not both announce: the stream is
        failed with an error naming the type."""
        error = RemoteProtocolError(
            f"{type(message).__name__} {needs} Capability.{capability} announced by both sides",
            field="header.type",
            value=message.TYPE,
        )
        self._decoder.fail(error)
        raise error

    def _unanswerable_chain(
        self, message: ResponseChain | ReadAhead, events: list[HostEvent]
    ) -> None:
        """A chain or a ReadAhead with no APDU in flight: ahead of an aborted APDU's late
        answer, or a violation."""
        if message.reader_id in self._aborted:
            return  # the answer that follows clears the abort
        reason = "no APDU in flight on this reader"
        name = type(message).__name__
        self._violation(message, reason, f"{name}.reader_id", message.reader_id, events)

    def _take_read_ahead(
        self, reader: HostReader, message: ReadAhead, events: list[HostEvent]
    ) -> None:
        """Keep ``message`` for the response in flight, within the bounds of
        :mod:`vscard.read_ahead`; past them, or after a chain the client cut short (the card
        still held the rest, which reading ahead threw away), a violation, and dropped."""
        chain = reader.chain
        if chain is not None and more_remaining(chain.sw):
            reason = "a ReadAhead after a ResponseChain cut short"
            self._violation(message, reason, "ResponseChain.sw", chain.sw, events)
            return
        size = reader.read_ahead_bytes + message.size
        if len(reader.read_ahead) >= MAX_READ_AHEAD or size > MAX_READ_AHEAD_BYTES:
            reason = (
                f"past {MAX_READ_AHEAD} ReadAheads or {MAX_READ_AHEAD_BYTES} bytes for one APDU"
            )
            self._violation(message, reason, "ReadAhead.size", size, events)
            return
        reader.read_ahead.append(message)
        reader.read_ahead_bytes = size

    @staticmethod
    def _forget_extras(reader: HostReader) -> None:
        """Drop what came for the APDU in flight: its chain and ReadAheads."""
        reader.chain = None
        if reader.read_ahead:
            reader.read_ahead = []
            reader.read_ahead_bytes = 0

    def _abort_apdu(self, reader: HostReader, events: list[HostEvent]) -> None:
        self._forget_extras(reader)
        if reader.apdu_in_flight:
            reader.apdu_in_flight = False
            self._aborted.add(reader.reader_id)
            events.append(APDUAborted(reader.reader_id))

    def _remove_card(self, reader: HostReader, events: list[HostEvent]) -> None:
        self._abort_apdu(reader, events)
        if reader.atr is not None:
            reader.atr = None
            events.append(CardRemoved(reader.reader_id))
