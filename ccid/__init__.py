"""A USB CCID rev 1.1 smart-card reader and the USB/IP server that exports it.

The layers, bottom up:

- :mod:`ccid.messages` and :mod:`ccid.codec`: the PC_to_RDR / RDR_to_PC wire format.
- :class:`Reader`: the reader, sans-IO (bulk-OUT bytes in, bulk-IN and interrupt messages out,
  time as an explicit input); :mod:`ccid.descriptors` and :mod:`ccid.control` for ep0.
- :class:`Card`: what a card offers a reader; :class:`MemoryCard` for tests.
- :class:`CCIDDevice`: the asyncio adapter, a :class:`ccid.usb.UsbDevice` for USB/IP, loaded on
  first use: ``import ccid`` costs the sans-IO reader only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .card import Card, MemoryCard
from .configuration import ReaderConfiguration
from .errors import CCIDError
from .reader import Reader
from .slot import SlotState

if TYPE_CHECKING:
    from .device import CCIDDevice


def __getattr__(name: str) -> object:
    if name != "CCIDDevice":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .device import CCIDDevice

    globals()[name] = CCIDDevice
    return CCIDDevice


__all__ = [
    "CCIDDevice",
    "CCIDError",
    "Card",
    "MemoryCard",
    "Reader",
    "ReaderConfiguration",
    "SlotState",
]
