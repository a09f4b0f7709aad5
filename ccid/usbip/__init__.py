"""USB/IP v1.1.1: export a :class:`~ccid.usb.UsbDevice` to ``usbip attach`` (Linux vhci-hcd,
usbip-win2), and a small client to import one.

The layers, bottom up:

- :mod:`~ccid.usbip.messages` and :func:`encode_usbip` / :class:`RequestDecoder` /
  :class:`ReplyDecoder`: the wire format.
- :class:`USBIPServerConnection` (the exporter) and :class:`USBIPClientConnection` (the importer):
  protocol behaviour, URB bookkeeping and unlink races, bytes in, events and bytes out, no I/O.
- :func:`serve_usbip` and :func:`import_device` / :func:`list_devices`: asyncio adapters, loaded on
  first use: ``import ccid.usbip`` costs the sans-IO layers only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from cardfloor.lazy import lazy_exports

from .client_connection import USBIPClientConnection, USBIPClientState
from .codec import (
    DEFAULT_MAX_DEVICES,
    DEFAULT_MAX_TRANSFER_LENGTH,
    encode_usbip,
)
from .connection import (
    DEFAULT_MAX_PENDING_URBS,
    USBIPServerConnection,
    USBIPServerState,
    is_port_reset,
)
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
    ImportRefusedError,
    URBError,
    USBIPConnectionClosedError,
    USBIPError,
    USBIPLocalProtocolError,
    USBIPProtocolError,
    USBIPRemoteProtocolError,
)
from .events import (
    DevlistReceived,
    DevlistRequested,
    ImportAccepted,
    ImportRefused,
    ImportRequested,
    PortReset,
    UnlinkAnswered,
    UnlinkRequested,
    URBCompleted,
    URBRefused,
    URBSubmitted,
    URBUnlinked,
    USBIPClientEvent,
    USBIPServerEvent,
)
from .messages import (
    CmdSubmit,
    CmdUnlink,
    ExportedDevice,
    OpRepDevlist,
    OpRepImport,
    OpReqDevlist,
    OpReqImport,
    Reply,
    Request,
    RetSubmit,
    RetUnlink,
    USBIPMessage,
)

if TYPE_CHECKING:
    from .client import URB, USBIPClient, import_device, list_devices
    from .server import (
        DEFAULT_MAX_USBIP_CONNECTIONS,
        DEFAULT_OP_TIMEOUT,
        Export,
        USBIPServer,
        serve_usbip,
    )

#: The asyncio adapters' names and the module that defines each.
_LAZY: Final = dict.fromkeys(
    ("URB", "USBIPClient", "import_device", "list_devices"), ".client"
) | dict.fromkeys(
    (
        "DEFAULT_MAX_USBIP_CONNECTIONS",
        "DEFAULT_OP_TIMEOUT",
        "Export",
        "USBIPServer",
        "serve_usbip",
    ),
    ".server",
)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)


__all__ = [
    "DEFAULT_MAX_DEVICES",
    "DEFAULT_MAX_PENDING_URBS",
    "DEFAULT_MAX_TRANSFER_LENGTH",
    "DEFAULT_MAX_USBIP_CONNECTIONS",
    "DEFAULT_OP_TIMEOUT",
    "URB",
    "USBIP_PORT",
    "USBIP_VERSION",
    "CmdSubmit",
    "CmdUnlink",
    "Command",
    "DevlistReceived",
    "DevlistRequested",
    "Direction",
    "Export",
    "ExportedDevice",
    "ImportAccepted",
    "ImportRefused",
    "ImportRefusedError",
    "ImportRequested",
    "OpCode",
    "OpRepDevlist",
    "OpRepImport",
    "OpReqDevlist",
    "OpReqImport",
    "OpStatus",
    "PortReset",
    "Reply",
    "Request",
    "RetSubmit",
    "RetUnlink",
    "TransferFlags",
    "URBCompleted",
    "URBError",
    "URBRefused",
    "URBStatus",
    "URBSubmitted",
    "URBUnlinked",
    "USBIPClient",
    "USBIPClientConnection",
    "USBIPClientEvent",
    "USBIPClientState",
    "USBIPConnectionClosedError",
    "USBIPError",
    "USBIPLocalProtocolError",
    "USBIPMessage",
    "USBIPProtocolError",
    "USBIPRemoteProtocolError",
    "USBIPServer",
    "USBIPServerConnection",
    "USBIPServerEvent",
    "USBIPServerState",
    "UnlinkAnswered",
    "UnlinkRequested",
    "encode_usbip",
    "import_device",
    "is_port_reset",
    "list_devices",
    "serve_usbip",
]
