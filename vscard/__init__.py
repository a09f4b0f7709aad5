"""QEMU's VSCard smart-card passthrough protocol: typed messages, a sans-IO codec and
connections, and asyncio client and server adapters.

The layers, bottom up:

- :mod:`vscard.messages` and :func:`encode` / :class:`Decoder`: the wire format.
- :class:`HostConnection` (the side that uses cards, like QEMU's ccid-card-passthru) and
  :class:`ClientConnection` (the side that owns them, like vscclient): protocol behaviour,
  bytes in, events and bytes out, no I/O.
- :func:`connect` and :func:`serve`: asyncio adapters.
"""

from .asyncio import APDUHandler, Client, Reader, Server, Session, SessionHandler, connect, serve
from .atr import atr_problem
from .client import ClientConnection
from .codec import Decoder, encode
from .constants import (
    HEADER_SIZE,
    MAX_ATR_SIZE,
    MAX_FRAME_SIZE,
    VSCARD_MAGIC,
    VSCARD_MINIMAL_READER_ID,
    VSCARD_UNDEFINED_READER_ID,
    VSCARD_VERSION,
    ErrorCode,
    MessageType,
)
from .errors import (
    APDUFailedError,
    CardRemovedError,
    ConnectionClosedError,
    LocalProtocolError,
    NoCardError,
    ProtocolError,
    ReaderBusyError,
    RequestRefusedError,
    UnknownReaderError,
    VSCardError,
)
from .events import (
    APDUAborted,
    APDUFailed,
    APDURequest,
    APDUResponse,
    CardInserted,
    CardRemoved,
    ClientEvent,
    FlushCompleted,
    FlushRequested,
    HostEvent,
    PeerInit,
    ReaderAdded,
    ReaderRemoved,
    RequestAnswered,
    Unexpected,
)
from .host import HostConnection, HostReader
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

__all__ = [
    "APDU",
    "ATR",
    "HEADER_SIZE",
    "MAX_ATR_SIZE",
    "MAX_FRAME_SIZE",
    "VSCARD_MAGIC",
    "VSCARD_MINIMAL_READER_ID",
    "VSCARD_UNDEFINED_READER_ID",
    "VSCARD_VERSION",
    "APDUAborted",
    "APDUFailed",
    "APDUFailedError",
    "APDUHandler",
    "APDURequest",
    "APDUResponse",
    "CardInserted",
    "CardRemove",
    "CardRemoved",
    "CardRemovedError",
    "Client",
    "ClientConnection",
    "ClientEvent",
    "ConnectionClosedError",
    "Decoder",
    "Error",
    "ErrorCode",
    "Flush",
    "FlushComplete",
    "FlushCompleted",
    "FlushRequested",
    "HostConnection",
    "HostEvent",
    "HostReader",
    "Init",
    "LocalProtocolError",
    "Message",
    "MessageType",
    "NoCardError",
    "PeerInit",
    "ProtocolError",
    "Reader",
    "ReaderAdd",
    "ReaderAdded",
    "ReaderBusyError",
    "ReaderRemove",
    "ReaderRemoved",
    "RequestAnswered",
    "RequestRefusedError",
    "Server",
    "Session",
    "SessionHandler",
    "Unexpected",
    "UnknownReaderError",
    "VSCardError",
    "atr_problem",
    "connect",
    "encode",
    "serve",
]
