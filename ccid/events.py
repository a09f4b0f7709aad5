"""What the sans-IO :class:`~ccid.reader.CCIDReader` asks of the side that owns the card.

The reader decides *when* the card is used; whoever holds the card (an asyncio adapter, a
test) does the work and reports back to the reader. Each of the reader's inputs returns the
events it caused, in the order the card side must act on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cardfloor.lazy import lazy_exports


@dataclass(frozen=True, slots=True)
class APDURequested:
    """Send ``apdu`` to the card, then call ``CCIDReader.apdu_response(request, ...)``.

    Or ``CCIDReader.apdu_failed(request)`` when the card gives no answer. ``request`` tells this
    APDU from any earlier one whose answer arrives late.
    """

    request: int
    apdu: bytes


@dataclass(frozen=True, slots=True)
class APDUCancelled:
    """The APDU ``request`` will not be answered (card removed, abort, USB reset): stop it.

    A result reported for it afterwards is ignored.
    """

    request: int


@dataclass(frozen=True, slots=True)
class ICCReset:
    """The host powered the card up (cold or warm reset) or down, or the USB bus was reset.

    A real card loses its volatile state (selected applets, verified PINs) at that point, so
    the card should too. ``active`` says whether the card is powered afterwards.
    """

    active: bool


CCIDReaderEvent = APDURequested | APDUCancelled | ICCReset
"""What a :class:`~ccid.reader.CCIDReader` input returns a list of."""

if TYPE_CHECKING:
    ReaderEvent = CCIDReaderEvent

# The old name, kept for one release as ccid.Reader and ccid.Card are.
__getattr__, __dir__ = lazy_exports(
    __name__, globals(), {}, deprecated={"ReaderEvent": "CCIDReaderEvent"}
)
