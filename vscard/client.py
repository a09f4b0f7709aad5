"""Sans-IO client side: the party that owns the cards, like libcacard's vscclient.

The host answers Init with Init, and ReaderAdd, ReaderRemove, ATR and CardRemove each with one
VSC_Error, in request order and without any correlation id. The connection keeps those
requests in a FIFO and pairs each reply with the oldest one, so the application learns which
request a :class:`~vscard.events.RequestAnswered` belongs to.

A host may hold fewer readers than the client adds: QEMU's ccid-card-passthru holds one and
answers every ReaderAdd with reader id 0 (hw/usb/ccid-card-passthru.c,
``ccid_card_vscard_handle_message``). The connection notices from the replies alone, when a
ReaderAdd gets the id of a reader the host already holds (:attr:`ClientConnection.one_reader_host`).
"""

from __future__ import annotations

from collections import deque

from .codec import Decoder, encode
from .constants import MAX_FRAME_SIZE, VSCARD_UNDEFINED_READER_ID, ErrorCode
from .errors import LocalProtocolError, ProtocolError
from .events import (
    APDURequest,
    ClientEvent,
    FlushRequested,
    PeerInit,
    RequestAnswered,
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

#: Requests in flight before the client must wait for replies. QEMU answers each at once;
#: this only bounds memory against a host that never answers.
MAX_PENDING_REQUESTS = 64


class ClientConnection:
    """One VSCard connection, seen from the card side. Feed it bytes, read events and bytes back."""

    def __init__(self, *, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        self._decoder = Decoder(max_frame_size=max_frame_size)
        self._max_frame_size = max_frame_size
        self._pending: deque[Message] = deque()
        self._outgoing = bytearray()
        self.peer_version: int | None = None
        """The host's protocol version, once its Init arrived."""
        self._reader_ids: set[int] = set()
        self._one_reader_host = False

    @property
    def error(self) -> ProtocolError | None:
        """The :class:`vscard.ProtocolError` the host's bytes caused, or None.

        Set when :meth:`receive_data` raises it, and also when a call returns the events of
        the good frames that came before a bad one: act on those events, then close the
        connection with this error. Once set, every :meth:`receive_data` raises it.
        """
        return self._decoder.error

    @property
    def reader_ids(self) -> frozenset[int]:
        """The ids the host gave to ReaderAdds and that no ReaderRemove took back."""
        return frozenset(self._reader_ids)

    @property
    def one_reader_host(self) -> bool:
        """True once the host answered a ReaderAdd with the id of a reader it already holds.

        Such a host keeps one reader for the whole connection whatever the client adds (QEMU's
        ccid-card-passthru); every later ReaderAdd names that same reader.
        """
        return self._one_reader_host

    @property
    def pending_requests(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    def data_to_send(self) -> bytes:
        """Return, and forget, the bytes queued for the peer."""
        data = bytes(self._outgoing)
        self._outgoing.clear()
        return data

    def send_init(self) -> None:
        """Queue our Init. Send it first: QEMU's own Init is lost unless we were connected."""
        self._send(Init(VSCARD_UNDEFINED_READER_ID))

    def add_reader(self, name: str = "") -> None:
        """Queue a ReaderAdd; the reply's reader_id is the reader's id from now on."""
        self._request(ReaderAdd(VSCARD_UNDEFINED_READER_ID, name))

    def remove_reader(self, reader_id: int) -> None:
        """Queue a ReaderRemove (the host treats an unknown id as already removed)."""
        self._request(ReaderRemove(reader_id))

    def insert_card(self, reader_id: int, atr: bytes) -> None:
        """Queue an ATR: a card was inserted into, or reset in, the reader."""
        self._request(ATR(reader_id, atr))

    def remove_card(self, reader_id: int) -> None:
        """Queue a CardRemove."""
        self._request(CardRemove(reader_id))

    def send_response(self, reader_id: int, response: bytes) -> None:
        """Queue the card's response (data and SW1 SW2) to the host's APDU."""
        self._send(APDU(reader_id, response))

    def send_failure(self, reader_id: int, code: int = ErrorCode.GENERAL_ERROR) -> None:
        """Queue a VSC_Error in place of a response: the card could not answer the APDU."""
        self._send(Error(reader_id, code))

    def send_flush_complete(self, reader_id: int) -> None:
        """Queue the answer to the host's Flush."""
        self._send(FlushComplete(reader_id))

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientEvent]:
        """Consume bytes from the host and return what happened.

        Raises :class:`vscard.ProtocolError` on malformed input; the connection must then close.
        When good frames come before the bad one in ``data``, their events are returned
        instead and :attr:`error` holds the error: check it after acting on them.
        """
        events: list[ClientEvent] = []
        for message in self._decoder.feed(data):
            match message:
                case APDU(reader_id, apdu):
                    events.append(APDURequest(reader_id, apdu))
                case Error(reader_id, code) if self._pending:
                    request = self._pending.popleft()
                    if code == ErrorCode.SUCCESS:
                        self._track_reader_ids(request, reader_id)
                    events.append(RequestAnswered(request, reader_id, code))
                case Init(_, version, capabilities):
                    # A host may send two: one when its device starts (if we were connected
                    # already) and one in reply to ours.
                    self.peer_version = version
                    events.append(PeerInit(version, capabilities))
                case Flush(reader_id):
                    events.append(FlushRequested(reader_id))
                case Error():
                    events.append(Unexpected(message, "reply without a request"))
                case _:
                    events.append(Unexpected(message, "not a message a host sends"))
        return events

    def _track_reader_ids(self, request: Message, reader_id: int) -> None:
        if isinstance(request, ReaderAdd):
            if reader_id in self._reader_ids:
                self._one_reader_host = True
            self._reader_ids.add(reader_id)
        elif isinstance(request, ReaderRemove):
            self._reader_ids.discard(request.reader_id)

    def _send(self, message: Message) -> None:
        self._outgoing += encode(message, max_frame_size=self._max_frame_size)

    def _request(self, message: Message) -> None:
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise LocalProtocolError(
                f"{MAX_PENDING_REQUESTS} requests already wait for the host's reply"
            )
        self._send(message)
        self._pending.append(message)
