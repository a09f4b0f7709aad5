"""Sans-IO client side: the party that owns the cards, like libcacard's vscclient.

The host answers Init with Init, and ReaderAdd, ReaderRemove, ATR and CardRemove each with one
VSC_Error, in request order and without any correlation id. The connection keeps those
requests in a FIFO and pairs each reply with the oldest one, so the application learns which
request a :class:`~vscard.events.RequestAnswered` belongs to.

A host may hold fewer readers than the client adds: QEMU's ccid-card-passthru holds one and
answers every ReaderAdd with reader id 0 (hw/usb/ccid-card-passthru.c,
``ccid_card_vscard_handle_message``). The connection notices from the replies alone, when a
ReaderAdd gets the id of a reader the host already holds (:attr:`ClientConnection.one_reader_host`).

The connection keeps the host's view of the readers and cards, from the host's successful
replies: a reader exists from its ReaderAdd's reply to its ReaderRemove's, a card from its
ATR's reply to its CardRemove's (or its reader's removal). Replies arrive in stream order, so
this is what the host believed when it sent each later message.

It answers by itself what no application could: an APDU for a reader that does not exist gets
VSC_Error GENERAL_ERROR and a Flush for one gets FlushComplete, each reported
:class:`~vscard.events.Unexpected`. An APDU for a reader without a card still goes to the
application, which knows its card: QEMU keeps a card across reconnects, and a client that
connects without a reset (``connect(reset=False)``) serves it without a new ATR.

Our extension: with ``capabilities=Capability.CARD_RESET`` (the asyncio client's default; a bare
connection announces QEMU's 0, since its application must handle two more events) the
client's Init announces it, and once the host's Init announced it too, the host's CardReset
and CardProtocol become :class:`~vscard.events.CardResetRequested` and
:class:`~vscard.events.ProtocolChanged`.
Either message without both announcements raises :class:`~vscard.RemoteProtocolError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from cardfloor.frozen import slot_setters

from .codec import Decoder, encode
from .constants import MAX_FRAME_SIZE, VSCARD_UNDEFINED_READER_ID, Capability, ErrorCode
from .errors import LocalProtocolError, RemoteProtocolError
from .events import (
    APDURequest,
    CardResetRequested,
    ClientEvent,
    FlushRequested,
    PeerInit,
    ProtocolChanged,
    RequestAnswered,
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

# APDURequest events are built without their __init__ (see cardfloor.frozen): both fields
# come from a decoded APDU frame, already checked.
_new: Final = object.__new__
_set_request_reader_id, _set_request_apdu = slot_setters(APDURequest, ("reader_id", "apdu"))


def _apdu_request(reader_id: int, apdu: bytes) -> APDURequest:
    """``APDURequest(reader_id, apdu)`` for the fields of a decoded APDU (see above)."""
    event: APDURequest = _new(APDURequest)
    _set_request_reader_id(event, reader_id)
    _set_request_apdu(event, apdu)
    return event


_KNOWN: Final = int(Capability.CARD_RESET | Capability.RESPONSE_CHAIN | Capability.READ_AHEAD)

#: Requests in flight before the client must wait for replies. QEMU answers each at once;
#: this only bounds memory against a host that never answers.
MAX_PENDING_REQUESTS = 64


class ClientConnection:
    """One VSCard connection, seen from the card side. Feed it bytes, read events and bytes back.

    The request methods (:meth:`add_reader`, :meth:`remove_reader`, :meth:`insert_card`,
    :meth:`remove_card`) raise :class:`~vscard.LocalProtocolError` and queue nothing while
    ``MAX_PENDING_REQUESTS`` requests wait for the host's reply.
    """

    def __init__(
        self,
        *,
        max_frame_size: int = MAX_FRAME_SIZE,
        capabilities: int = 0,
    ) -> None:
        self._decoder = Decoder(max_frame_size=max_frame_size)
        self.capabilities = Capability(capabilities)
        """What our Init announces."""
        self.peer_capabilities = Capability(0)
        """Our bits among those the host's Init announced (none until it arrived)."""
        self._max_frame_size = max_frame_size
        self._pending: deque[Message] = deque()
        self._outgoing = bytearray()
        self.peer_version: int | None = None
        """The host's protocol version, once its Init arrived."""
        self._reader_ids: set[int] = set()
        # The ATR of each reader's card, once the host accepted it.
        self._cards: dict[int, bytes] = {}
        self._one_reader_host = False
        # What both Inits announced, kept: asked on every APDU, it changes only at an Init.
        self._card_reset = self._response_chain = self._read_ahead = False

    @property
    def error(self) -> RemoteProtocolError | None:
        """The :class:`vscard.RemoteProtocolError` the host's bytes caused, or None.

        Set when :meth:`receive_data` raises it, and also when a call returns the events of
        the good frames that came before a bad one: act on those events, then close the
        connection with this error. Once set, every :meth:`receive_data` raises it.
        """
        return self._decoder.error

    @property
    def card_reset(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.CARD_RESET`: the host may
        send CardReset and CardProtocol."""
        return self._card_reset

    @property
    def response_chain(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.RESPONSE_CHAIN`: the client
        may send :meth:`send_response_chain`."""
        return self._response_chain

    @property
    def read_ahead(self) -> bool:
        """True once both Inits announced :attr:`~vscard.Capability.READ_AHEAD`: the client
        may send :meth:`send_read_ahead`."""
        return self._read_ahead

    @property
    def reader_ids(self) -> frozenset[int]:
        """The ids the host gave to ReaderAdds and that no ReaderRemove took back."""
        return frozenset(self._reader_ids)

    @property
    def cards(self) -> Mapping[int, bytes]:
        """The ATR of the card in each reader, by reader id, from the host's reply to the ATR
        until its reply to the CardRemove or ReaderRemove (a live, read-only view)."""
        return MappingProxyType(self._cards)

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
        self._send(Init(VSCARD_UNDEFINED_READER_ID, capabilities=(int(self.capabilities),)))

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

    def send_response_chain(self, reader_id: int, data: bytes, sw: int) -> None:
        """Queue a ResponseChain: what GET RESPONSEs read ahead after the card's ``61xx``
        answer. Send it just before that answer (:meth:`send_response`).

        Raises :class:`~vscard.LocalProtocolError` (field ``capabilities``) unless
        :attr:`response_chain`; nothing is queued then.
        """
        if not self.response_chain:
            raise LocalProtocolError(
                "ResponseChain needs Capability.RESPONSE_CHAIN announced by both sides",
                field="capabilities",
                value=int(self.peer_capabilities),
            )
        self._send(ResponseChain(reader_id, data, sw))

    def send_read_ahead(self, entry: ReadAhead) -> None:
        """Queue a ReadAhead: the card's answer to a command the host's guest is likely to send
        next (see :mod:`vscard.read_ahead`). Send it before the response to the host's APDU in
        flight (:meth:`send_response`), after its ResponseChain, if any.

        Raises :class:`~vscard.LocalProtocolError` (field ``capabilities``) unless
        :attr:`read_ahead`; nothing is queued then.
        """
        if not self.read_ahead:
            raise LocalProtocolError(
                "ReadAhead needs Capability.READ_AHEAD announced by both sides",
                field="capabilities",
                value=int(self.peer_capabilities),
            )
        self._send(entry)

    def send_failure(self, reader_id: int, code: int = ErrorCode.GENERAL_ERROR) -> None:
        """Queue a VSC_Error in place of a response: the card could not answer the APDU."""
        self._send(Error(reader_id, code))

    def send_flush_complete(self, reader_id: int) -> None:
        """Queue the answer to the host's Flush."""
        self._send(FlushComplete(reader_id))

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[ClientEvent]:
        """Consume bytes from the host and return what happened.

        Raises :class:`vscard.RemoteProtocolError` on malformed input; the connection must
        then close. When good frames come before the bad one in ``data``, their events are
        returned instead and :attr:`error` holds the error: check it after acting on them.
        An APDU or Flush for a reader that does not exist is answered here (see the module)
        and the answer queued for :meth:`data_to_send`.
        """
        events: list[ClientEvent] = []
        readers = self._reader_ids
        try:
            for message in self._decoder.feed(data):
                # The per-APDU path first, without the class patterns' attribute lookups.
                if type(message) is APDU and message.reader_id in readers:
                    events.append(_apdu_request(message.reader_id, message.data))
                    continue
                match message:
                    case APDU(reader_id):
                        self._send(Error(reader_id, ErrorCode.GENERAL_ERROR))
                        events.append(Unexpected(message, "no such reader"))
                    case Error(reader_id, code) if self._pending:
                        request = self._pending.popleft()
                        if code == ErrorCode.SUCCESS:
                            self._track(request, reader_id)
                        events.append(RequestAnswered(request, reader_id, code))
                    case Init(_, version, capabilities):
                        # A host may send two: one when its device starts (if we were connected
                        # already) and one in reply to ours.
                        self.peer_version = version
                        # A second Init cannot take back what the first announced.
                        self.peer_capabilities |= Capability(capabilities[0] & _KNOWN)
                        both = self.capabilities & self.peer_capabilities
                        self._card_reset = bool(both & Capability.CARD_RESET)
                        self._response_chain = bool(both & Capability.RESPONSE_CHAIN)
                        self._read_ahead = bool(both & Capability.READ_AHEAD)
                        events.append(PeerInit(version, capabilities))
                    case Flush(reader_id):
                        if reader_id in readers:
                            events.append(FlushRequested(reader_id))
                        else:
                            self._send(FlushComplete(reader_id))
                            events.append(Unexpected(message, "no such reader"))
                    case CardReset(reader_id, protocol) | CardProtocol(reader_id, protocol):
                        self._check_extension(message)
                        if reader_id not in readers:
                            events.append(Unexpected(message, "no such reader"))
                        elif isinstance(message, CardReset):
                            events.append(CardResetRequested(reader_id, protocol))
                        else:
                            events.append(ProtocolChanged(reader_id, protocol))
                    case Error():
                        events.append(Unexpected(message, "reply without a request"))
                    case _:
                        events.append(Unexpected(message, "not a message a host sends"))
        except RemoteProtocolError:  # the decoder's, or an extension nobody announced
            if events:
                return events  # the good frames first; :attr:`error` holds it
            raise
        return events

    def _check_extension(self, message: CardReset | CardProtocol) -> None:
        if not self.card_reset:
            error = RemoteProtocolError(
                f"{type(message).__name__} needs Capability.CARD_RESET announced by both sides "
                f"(ours {int(self.capabilities):#010x}, the host's "
                f"{int(self.peer_capabilities):#010x})",
                field="header.type",
                value=message.TYPE,
            )
            self._decoder.fail(error)  # the frames after it are never handled
            raise error

    def _track(self, request: Message, reader_id: int) -> None:
        """Update the host's view of readers and cards from its successful reply."""
        match request:
            case ReaderAdd():
                if reader_id in self._reader_ids:
                    self._one_reader_host = True
                self._reader_ids.add(reader_id)
            case ReaderRemove(removed):
                self._reader_ids.discard(removed)
                self._cards.pop(removed, None)
            case ATR(inserted, atr) if inserted in self._reader_ids:
                # QEMU accepts an ATR for any id; a reader never added has nobody to serve it.
                self._cards[inserted] = atr
            case CardRemove(removed):
                self._cards.pop(removed, None)

    def _send(self, message: Message) -> None:
        self._outgoing += encode(message, max_frame_size=self._max_frame_size)

    def _request(self, message: Message) -> None:
        if len(self._pending) >= MAX_PENDING_REQUESTS:
            raise LocalProtocolError(
                "too many requests wait for the host's reply",
                field="pending_requests",
                value=len(self._pending),
            )
        self._send(message)
        self._pending.append(message)
