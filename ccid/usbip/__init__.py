"""USB/IP v1.1.1: export a :class:`~ccid.usb.UsbDevice` to ``usbip attach`` (Linux vhci-hcd,
usbip-win2), and a small client to import one.

The layers, bottom up:

- :mod:`~ccid.usbip.messages` and :func:`encode` / :class:`RequestDecoder` /
  :class:`ReplyDecoder`: the wire format.
- :class:`ServerConnection` (the exporter) and :class:`ClientConnection` (the importer):
  protocol behaviour, URB bookkeeping and unlink races, bytes in, events and bytes out, no I/O.
- :func:`serve` and :func:`import_device` / :func:`list_devices`: asyncio adapters, loaded on
  first use: ``import ccid.usbip`` costs the sans-IO layers only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

from .client_connection import ClientConnection, ClientState
from .codec import (
    DEFAULT_MAX_DEVICES,
    DEFAULT_MAX_TRANSFER_LENGTH,
    Phase,
    ReplyDecoder,
    RequestDecoder,
    encode,
)
from .connection import DEFAULT_MAX_PENDING_URBS, ServerConnection, State, is_port_reset
from .constants import (
    USBIP_PORT,
    USBIP_VERSION,
    Command,
    Direction,
    OpCode,
    OpStatus,
    TransferFlags,
    URBStatus,
)
from .errors import (
    ConnectionClosedError,
    ImportRefusedError,
    LocalProtocolError,
    ProtocolError,
    URBError,
    USBIPError,
)
from .events import (
    ClientEvent,
    DevlistReceived,
    DevlistRequested,
    ImportAccepted,
    ImportRefused,
    ImportRequested,
    PortReset,
    ServerEvent,
    UnlinkAnswered,
    UnlinkRequested,
    URBCompleted,
    URBRefused,
    URBSubmitted,
    URBUnlinked,
)
from .messages import (
    CmdSubmit,
    CmdUnlink,
    ExportedDevice,
    Message,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    Reply,
    Request,
    RetSubmit,
    RetUnlink,
)

if TYPE_CHECKING:
    from .client import URB, Client, import_device, list_devices
    from .server import (
        DEFAULT_MAX_CONNECTIONS,
        DEFAULT_OP_TIMEOUT,
        Export,
        Server,
        serve,
    )

#: The asyncio adapters' names and the module that defines each.
_LAZY: Final = dict.fromkeys(("URB", "Client", "import_device", "list_devices"), ".client") | (
    dict.fromkeys(
        ("DEFAULT_MAX_CONNECTIONS", "DEFAULT_OP_TIMEOUT", "Export", "Server", "serve"), ".server"
    )
)


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_DEVICES",
    "DEFAULT_MAX_PENDING_URBS",
    "DEFAULT_MAX_TRANSFER_LENGTH",
    "DEFAULT_OP_TIMEOUT",
    "URB",
    "USBIP_PORT",
    "USBIP_VERSION",
    "Client",
    "ClientConnection",
    "ClientEvent",
    "ClientState",
    "CmdSubmit",
    "CmdUnlink",
    "Command",
    "ConnectionClosedError",
    "DevlistReceived",
    "DevlistRequested",
    "Direction",
    "Export",
    "ExportedDevice",
    "ImportAccepted",
    "ImportRefused",
    "ImportRefusedError",
    "ImportRequested",
    "LocalProtocolError",
    "Message",
    "OpCode",
    "OpRepDevlist",
    "OpRepImport",
    "OpReqDevlist",
    "OpReqImport",
    "OpStatus",
    "Phase",
    "PortReset",
    "ProtocolError",
    "Reply",
    "ReplyDecoder",
    "Request",
    "RequestDecoder",
    "RetSubmit",
    "RetUnlink",
    "Server",
    "ServerConnection",
    "ServerEvent",
    "State",
    "TransferFlags",
    "URBCompleted",
    "URBError",
    "URBRefused",
    "URBStatus",
    "URBSubmitted",
    "URBUnlinked",
    "USBIPError",
    "UnlinkAnswered",
    "UnlinkRequested",
    "encode",
    "import_device",
    "is_port_reset",
    "list_devices",
    "serve",
]
