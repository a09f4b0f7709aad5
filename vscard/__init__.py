"""QEMU's VSCard smart-card passthrough protocol: typed messages, a sans-IO codec and
connections, and asyncio client and server adapters.

The layers, bottom up:

- :mod:`vscard.messages` and :func:`encode` / :class:`Decoder`: the wire format.
- :class:`HostConnection` (the side that uses cards, like QEMU's ccid-card-passthru) and
  :class:`ClientConnection` (the side that owns them, like vscclient): protocol behaviour,
  bytes in, events and bytes out, no I/O.
- :func:`connect` and :func:`serve`: asyncio adapters, loaded on first use (as websockets
  does): ``import vscard`` costs the sans-IO layers only, no asyncio, no ssl.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cardfloor.lazy import lazy_exports

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
    Capability,
    ErrorCode,
    MessageType,
    TransmissionProtocol,
)
from .errors import (
    APDUFailedError,
    CardRemovedError,
    ConnectionClosedError,
    LocalProtocolError,
    NoCardError,
    ProtocolError,
    ReaderBusyError,
    RemoteProtocolError,
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
    CardResetRequested,
    ClientEvent,
    FlushCompleted,
    FlushRequested,
    HostEvent,
    PeerInit,
    ProtocolChanged,
    ReaderAdded,
    ReaderRemoved,
    RequestAnswered,
    Unexpected,
)
from .host import HostConnection, HostReader
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

if TYPE_CHECKING:
    from .asyncio import (
        APDUHandler,
        Client,
        ClientReader,
        ProtocolHandler,
        ResetHandler,
        Server,
        Session,
        SessionHandler,
        connect,
        serve,
    )

#: The asyncio adapters' names and the module that defines each.
_LAZY: Final = dict.fromkeys(
    ("APDUHandler", "Client", "ClientReader", "ProtocolHandler", "ResetHandler", "connect"),
    ".asyncio.client",
) | dict.fromkeys(("Server", "Session", "SessionHandler", "serve"), ".asyncio.server")


__getattr__, __dir__ = lazy_exports(
    __name__, globals(), _LAZY, deprecated={"Reader": "ClientReader"}
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
    "Capability",
    "CardInserted",
    "CardProtocol",
    "CardRemove",
    "CardRemoved",
    "CardRemovedError",
    "CardReset",
    "CardResetRequested",
    "Client",
    "ClientConnection",
    "ClientEvent",
    "ClientReader",
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
    "ProtocolChanged",
    "ProtocolError",
    "ProtocolHandler",
    "ReadAhead",
    "ReaderAdd",
    "ReaderAdded",
    "ReaderBusyError",
    "ReaderRemove",
    "ReaderRemoved",
    "RemoteProtocolError",
    "RequestAnswered",
    "RequestRefusedError",
    "ResetHandler",
    "ResponseChain",
    "Server",
    "Session",
    "SessionHandler",
    "TransmissionProtocol",
    "Unexpected",
    "UnknownReaderError",
    "VSCardError",
    "atr_problem",
    "connect",
    "encode",
    "serve",
]
