"""Sans-IO host side: what QEMU's ``ccid-card-passthru`` does with a VSCard client.

The host uses the client's cards. It answers every request the way QEMU 7.2 does (the reply
table in ``vscard-and-qemu.md`` §2.3) with these deliberate differences, all in the client's
favour:

- ReaderAdd gets a fresh reader id (the lowest free one from 0) instead of always 0, so one
  connection can carry several readers; past ``max_readers`` it gets CANNOT_ADD_MORE_READERS.
- ATR and CardRemove for a reader that was never added get GENERAL_ERROR (QEMU accepts any id).
  ReaderRemove of an unknown reader still succeeds: vscclient sends ReaderRemove(0) after every
  Init to clear stale state.
- The ATR check walks the whole TDi chain (:func:`vscard.atr.atr_problem`).
- A response is matched to its reader, never to "the oldest request"; a response nobody asked
  for is dropped and reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .atr import atr_problem
from .codec import Decoder, encode
from .constants import MAX_FRAME_SIZE, VSCARD_MINIMAL_READER_ID, ErrorCode
from .errors import NoCardError, ProtocolError, ReaderBusyError, UnknownReaderError
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
    CardRemove,
    Error,
    Flush,
    FlushComplete,
    Init,
    Message,
    ReaderAdd,
    ReaderRemove,
)

DEFAULT_MAX_READERS = 16


@dataclass(slots=True)
class HostReader:
    """A reader the client added, as the host sees it."""

    reader_id: int
    name: str
    atr: bytes | None = None
    apdu_in_flight: bool = False
    flush_in_flight: bool = False

    @property
    def card_present(self) -> bool:
        return self.atr is not None


class HostConnection:
    """One VSCard connection, seen from the host. Feed it bytes, read events and bytes back."""

    def __init__(
        self, *, max_readers: int = DEFAULT_MAX_READERS, max_frame_size: int = MAX_FRAME_SIZE
    ) -> None:
        if max_readers < 1:
            raise ValueError(f"max_readers={max_readers} must be at least 1")
        self._decoder = Decoder(max_frame_size=max_frame_size)
        self._max_frame_size = max_frame_size
        self._max_readers = max_readers
        self._readers: dict[int, HostReader] = {}
        self._outgoing = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame received so far."""
        return self._decoder.buffered

    @property
    def error(self) -> ProtocolError | None:
        """The :class:`vscard.ProtocolError` the client's bytes caused, or None.

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
        self._send(Init())

    def send_apdu(self, reader_id: int, apdu: bytes) -> None:
        """Queue a command APDU for the card in ``reader_id``; its answer comes as an event.

        Raises :class:`UnknownReaderError`, :class:`NoCardError` or, while an earlier APDU on
        that reader is unanswered, :class:`ReaderBusyError`.
        """
        reader = self._reader(reader_id)
        if reader.atr is None:
            raise NoCardError(reader_id)
        if reader.apdu_in_flight:
            raise ReaderBusyError(reader_id)
        self._send(APDU(reader_id, apdu))
        reader.apdu_in_flight = True

    def send_flush(self, reader_id: int) -> None:
        """Queue a Flush; :class:`FlushCompleted` reports the answer."""
        reader = self._reader(reader_id)
        self._send(Flush(reader_id))
        reader.flush_in_flight = True

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[HostEvent]:
        """Consume bytes from the client; queue replies and return what happened.

        Raises :class:`vscard.ProtocolError` on malformed input; the connection must then close.
        When good frames come before the bad one in ``data``, their events (and replies) are
        returned instead and :attr:`error` holds the error: check it after acting on them.
        """
        events: list[HostEvent] = []
        for message in self._decoder.feed(data):
            self._handle(message, events)
        return events

    # -- internals ------------------------------------------------------------------------

    def _reader(self, reader_id: int) -> HostReader:
        try:
            return self._readers[reader_id]
        except KeyError:
            raise UnknownReaderError(reader_id) from None

    def _send(self, message: Message) -> None:
        self._outgoing += encode(message, max_frame_size=self._max_frame_size)

    def _reply(self, reader_id: int, code: ErrorCode) -> None:
        self._send(Error(reader_id, code))

    def _handle(self, message: Message, events: list[HostEvent]) -> None:
        reader = self._readers.get(message.reader_id)
        match message:
            case APDU(reader_id, data):
                if reader is None or not reader.apdu_in_flight:
                    events.append(Unexpected(message, "no APDU in flight on this reader"))
                    return
                reader.apdu_in_flight = False
                events.append(APDUResponse(reader_id, data))
            case Error(reader_id, code):
                if reader is None or not reader.apdu_in_flight:
                    events.append(Unexpected(message, "no APDU in flight on this reader"))
                    return
                reader.apdu_in_flight = False
                events.append(APDUFailed(reader_id, code))
            case Init(_, version, capabilities):
                self._send(Init())
                events.append(PeerInit(version, capabilities))
            case ReaderAdd(request_id, name):
                if len(self._readers) >= self._max_readers:
                    self._reply(request_id, ErrorCode.CANNOT_ADD_MORE_READERS)
                    events.append(Unexpected(message, f"max_readers={self._max_readers} reached"))
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
                problem = "no such reader" if reader is None else atr_problem(atr)
                if reader is None or problem is not None:
                    self._reply(reader_id, ErrorCode.GENERAL_ERROR)
                    events.append(Unexpected(message, problem or ""))
                    return
                self._abort_apdu(reader, events)
                reader.atr = atr
                self._reply(reader_id, ErrorCode.SUCCESS)
                events.append(CardInserted(reader_id, atr))
            case CardRemove(reader_id):
                if reader is None:
                    self._reply(reader_id, ErrorCode.GENERAL_ERROR)
                    events.append(Unexpected(message, "no such reader"))
                    return
                self._remove_card(reader, events)
                self._reply(reader_id, ErrorCode.SUCCESS)
            case FlushComplete(reader_id) if reader is not None and reader.flush_in_flight:
                reader.flush_in_flight = False
                events.append(FlushCompleted(reader_id))
            case _:
                self._reply(message.reader_id, ErrorCode.GENERAL_ERROR)
                events.append(Unexpected(message, "not a message a client sends"))

    def _abort_apdu(self, reader: HostReader, events: list[HostEvent]) -> None:
        if reader.apdu_in_flight:
            reader.apdu_in_flight = False
            events.append(APDUAborted(reader.reader_id))

    def _remove_card(self, reader: HostReader, events: list[HostEvent]) -> None:
        self._abort_apdu(reader, events)
        if reader.atr is not None:
            reader.atr = None
            events.append(CardRemoved(reader.reader_id))
