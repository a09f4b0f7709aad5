"""A USB CCID rev 1.1 smart-card reader and the USB/IP server that exports it.

The layers, bottom up:

- :mod:`ccid.messages` and :mod:`ccid.codec`: the PC_to_RDR / RDR_to_PC wire format.
- :class:`CCIDReader`: the reader, sans-IO (bulk-OUT bytes in, bulk-IN and interrupt messages
  pulled per endpoint, each input returning the events it caused for the card side, time as an
  explicit input), following its :class:`Transaction` table; :mod:`ccid.descriptors` and
  :mod:`ccid.control` for ep0.
- :class:`ICC`: what a card in the slot offers a reader; :class:`MemoryCard` for tests.
- :class:`CCIDError` and below it :class:`CCIDProtocolError` (abstract),
  :class:`CCIDRemoteProtocolError` (the host's bytes: stall) and :class:`CCIDLocalProtocolError`
  (a call the reader cannot carry out): the same tree as :mod:`vscard`'s and USB/IP's.
- :class:`CCIDDevice`: the asyncio adapter, a :class:`ccid.usb.UsbDevice` for USB/IP, loaded on
  first use: ``import ccid`` costs the sans-IO reader only.

``Reader`` and ``Card`` are the old names of :class:`CCIDReader` and :class:`ICC`, kept for one
release with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardfloor.lazy import lazy_exports

from .card import ICC, MemoryCard
from .configuration import ReaderConfiguration
from .errors import (
    CCIDError,
    CCIDLocalProtocolError,
    CCIDProtocolError,
    CCIDRemoteProtocolError,
)
from .reader import CCIDReader
from .slot import SlotState
from .transaction import Transaction

if TYPE_CHECKING:
    from .device import CCIDDevice

    Reader = CCIDReader
    Card = ICC

__getattr__, __dir__ = lazy_exports(
    __name__,
    globals(),
    {"CCIDDevice": ".device"},
    deprecated={"Reader": "CCIDReader", "Card": "ICC"},
)


__all__ = [
    "ICC",
    "CCIDDevice",
    "CCIDError",
    "CCIDLocalProtocolError",
    "CCIDProtocolError",
    "CCIDReader",
    "CCIDRemoteProtocolError",
    "MemoryCard",
    "ReaderConfiguration",
    "SlotState",
    "Transaction",
]
