"""A USB CCID rev 1.1 smart-card reader and the USB/IP server that exports it (in progress).

The layers, bottom up:

- :mod:`ccid.messages` and :mod:`ccid.codec`: the PC_to_RDR / RDR_to_PC wire format.
- :class:`Reader`: the reader, sans-IO (bulk-OUT bytes in, bulk-IN and interrupt messages out,
  time as an explicit input); :mod:`ccid.descriptors` and :mod:`ccid.control` for ep0.
- :class:`Card`: what a card offers a reader; :class:`MemoryCard` for tests.
- :class:`CCIDDevice`: the asyncio adapter, a :class:`ccid.usb.UsbDevice` for USB/IP.
"""

from .card import Card, MemoryCard
from .configuration import ReaderConfiguration
from .device import CCIDDevice
from .errors import CCIDError
from .reader import Reader
from .slot import SlotState

__all__ = [
    "CCIDDevice",
    "CCIDError",
    "Card",
    "MemoryCard",
    "Reader",
    "ReaderConfiguration",
    "SlotState",
]
