"""What a sans-IO connection reports after it consumed bytes from its peer.

:class:`~vscard.host.HostConnection` (the side that uses a card, like QEMU's
ccid-card-passthru) emits the *host events*; :class:`~vscard.client.ClientConnection` (the side
that owns the card, like vscclient) emits the *client events*.
"""

from __future__ import annotations

from dataclasses import dataclass

from .messages import Message, ReadAhead, ResponseChain

# --- both sides ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerInit:
    """The peer's VSC_Init arrived (its magic already checked)."""

    version: int
    capabilities: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unexpected:
    """A well-formed message that makes no sense now; it was answered as QEMU would, or dropped."""

    message: Message
    reason: str


# --- host side -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReaderAdded:
    """The client added a reader; the host gave it ``reader_id``."""

    reader_id: int
    name: str


@dataclass(frozen=True, slots=True)
class ReaderRemoved:
    """The reader is gone. A card it held was reported removed just before."""

    reader_id: int


@dataclass(frozen=True, slots=True)
class CardInserted:
    """A card was inserted in the reader, or reset (a second ATR): ``atr`` is its ATR."""

    reader_id: int
    atr: bytes


@dataclass(frozen=True, slots=True)
class CardRemoved:
    """The card left the reader."""

    reader_id: int


@dataclass(frozen=True, slots=True)
class APDUResponse:
    """The response (data and SW1 SW2) to the APDU in flight on the reader; ``chain``, the
    ResponseChain the client sent just before it (see :mod:`vscard.response_chain`);
    ``read_ahead``, the ReadAheads it sent before it (see :mod:`vscard.read_ahead`)."""

    reader_id: int
    data: bytes
    chain: ResponseChain | None = None
    read_ahead: tuple[ReadAhead, ...] = ()


@dataclass(frozen=True, slots=True)
class APDUFailed:
    """The client answered the APDU in flight with VSC_Error ``code`` (any u32, see Error)."""

    reader_id: int
    code: int


@dataclass(frozen=True, slots=True)
class APDUAborted:
    """The APDU in flight will never be answered: its card was reset or removed."""

    reader_id: int


@dataclass(frozen=True, slots=True)
class FlushCompleted:
    """The client answered the host's Flush."""

    reader_id: int


# --- client side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestAnswered:
    """The host's VSC_Error reply to a request this side sent.

    ``request`` is the message it answers (replies come in request order). ``reader_id`` is
    the reply's header: for a ReaderAdd that is the id the host assigned.
    """

    request: Message
    reader_id: int
    code: int


@dataclass(frozen=True, slots=True)
class APDURequest:
    """The host sent a command APDU for the card in the reader."""

    reader_id: int
    apdu: bytes


@dataclass(frozen=True, slots=True)
class FlushRequested:
    """The host asks for FlushComplete once earlier APDUs on the reader are answered."""

    reader_id: int


@dataclass(frozen=True, slots=True)
class CardResetRequested:
    """The host's reader powered the card off and on (our CardReset): reset the card, and
    run ``protocol`` with it, before handling the reader's next APDU."""

    reader_id: int
    protocol: int


@dataclass(frozen=True, slots=True)
class ProtocolChanged:
    """The host's reader now runs ``protocol`` with the card (our CardProtocol)."""

    reader_id: int
    protocol: int


HostEvent = (
    PeerInit
    | ReaderAdded
    | ReaderRemoved
    | CardInserted
    | CardRemoved
    | APDUResponse
    | APDUFailed
    | APDUAborted
    | FlushCompleted
    | Unexpected
)
"""Anything :meth:`HostConnection.receive_data` returns."""

ClientEvent = (
    PeerInit
    | RequestAnswered
    | APDURequest
    | FlushRequested
    | CardResetRequested
    | ProtocolChanged
    | Unexpected
)
"""Anything :meth:`ClientConnection.receive_data` returns."""
