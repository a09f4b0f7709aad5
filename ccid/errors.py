"""Exceptions raised by the CCID codec, reader and ep0.

The tree, shaped like vscard's and USB/IP's (see docs/sans-io.md)::

    CCIDError                       everything this package (outside ccid.usbip) raises on purpose
    └── CCIDProtocolError           abstract: the protocol cannot go on; reason, field, value
        ├── CCIDRemoteProtocolError what the host sent cannot be answered in CCID: refuse
        │                           (stall) that one transfer or request
        └── CCIDLocalProtocolError  the caller of the sans-IO API asked for something the
                                    reader cannot do; nothing changed. Also a ValueError

``except CCIDProtocolError`` catches both sides; an adapter that stalls a transfer catches
:class:`CCIDRemoteProtocolError` only, so that a bug on our side is never blamed on the host.
Semantic faults in a well-framed bulk-OUT command (a wrong bSlot, a bad bPowerSelect) are not
errors: the reader answers them with bError, as the spec says.
"""

from __future__ import annotations

from cardfloor.errors import field_message


class CCIDError(Exception):
    """Base class of every exception the CCID codec, reader and ep0 raise on purpose."""


class CCIDProtocolError(CCIDError):
    """The protocol cannot go on. Never raised itself: catch it to catch both sides' errors.

    ``field`` names what was wrong (``"dwLength"``, ``"bStatus"``, ``"ATR.length"``...) and
    ``value`` is what it held; ``reason`` is the rule it broke.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        if type(self) is CCIDProtocolError:
            raise TypeError("raise CCIDRemoteProtocolError or CCIDLocalProtocolError")
        # CCID's fields are bytes and small words: two hex digits read as the spec prints them.
        super().__init__(field_message(reason, field, value, hex_digits=2))
        self.reason = reason
        self.field = field
        self.value = value


class CCIDRemoteProtocolError(CCIDProtocolError):
    """The host's bytes or request cannot be answered in CCID (bytes that break its framing,
    an ABORT for a slot that does not exist); the transfer is refused (stalled).

    Not sticky, unlike a stream's: the next transfer starts a new message.
    """


class CCIDLocalProtocolError(CCIDProtocolError, ValueError):
    """The caller of the sans-IO API asked for something the reader cannot do (a card whose ATR
    it cannot hold); nothing changed. A :class:`ValueError` too, as it was before the tree."""
