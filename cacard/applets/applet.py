"""What every applet is: an AID, the FCI a SELECT returns, and a command handler.

An applet answers the commands it knows and returns ``None`` for the rest, which the card then
handles in its ISO/IEC 7816-4 layer (VERIFY, GET CHALLENGE...) or refuses. An applet holds no
per-channel state itself: a :class:`Selection` carries what one SELECT remembers (the current
object, a half-received signing input), so the same applet can be selected on several logical
channels at once.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Final, Protocol

from cardfloor.iso7816.apdu import CommandAPDU, Response
from cardfloor.native import mypyc_attr

from ..pin import Pin
from ..tlv import ber_tlv

#: GSC-IS registered application provider identifiers.
RID_GSC_IS: Final = bytes.fromhex("A000000079")
RID_DOD: Final = bytes.fromhex("A000000116")
#: The Access Control Applet, which PKI applets name in their long properties.
ACA_AID: Final = RID_GSC_IS + b"\x03\x00"

TAG_FCI: Final = 0x6F
TAG_DF_NAME: Final = 0x84
TAG_FCI_PROPRIETARY: Final = 0xA5


class CardServices(Protocol):
    """What an applet may ask of the card it sits on."""

    @property
    def pin_verified(self) -> bool:
        """Whether the PIN has been verified since the last reset."""
        ...

    @property
    def pin(self) -> Pin:
        """The card's PIN, for an applet whose own PIN is the card's (PIV's ``80``).

        Ask for it on each command rather than keeping it: :meth:`unblock_pin` replaces it.
        """
        ...

    def unblock_pin(self, new_pin: bytes) -> bool:
        """Set the card's PIN to ``new_pin`` with a full retry counter, persisted before this
        returns; False if persisting failed (the PIN is then unchanged)."""
        ...


# Applets are the card's extension point: one written in Python may subclass these two on the
# compiled build too (its own selection state, as PIV's, is a Selection subclass).
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass(slots=True)
class Selection:
    """An applet selected on one logical channel and what that selection remembers.

    ``object_id`` is the object SELECT P1=02 chose (the applet's first by default); ``chain``
    holds the input of a chained PKI operation. A new SELECT makes a new selection, which is
    how selecting an applet clears both.
    """

    applet: Applet
    object_id: bytes | None = None
    chain: bytearray = field(default_factory=bytearray)


def fci(aid: bytes) -> bytes:
    """``6F L 84 L <AID> A5 00``: the FCI libcacard's applets return (13 bytes for 7-byte AIDs)."""
    return ber_tlv(TAG_FCI, ber_tlv(TAG_DF_NAME, aid) + ber_tlv(TAG_FCI_PROPRIETARY, b""))


@mypyc_attr(allow_interpreted_subclasses=True)
class Applet(abc.ABC):
    """One application on the card, selected by its AID (:meth:`selected_by`)."""

    def __init__(self, aid: bytes, name: str) -> None:
        self.aid = aid
        self.name = name

    def fci(self) -> bytes:
        """The data SELECT returns when the host asks for the FCI."""
        return fci(self.aid)

    def select(self) -> Selection:
        """A fresh selection of this applet."""
        return Selection(self)

    def selected_by(self, aid: bytes) -> bool:
        """Whether SELECT of ``aid`` chooses this applet when no applet has exactly that AID.
        Only the exact AID by default; an applet whose standard allows a right-truncated AID
        (PIV) says so here."""
        return aid == self.aid

    def reset(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Forget the security status the applet keeps itself (the card was reset or powered
        off). Nothing by default: most applets rely on the card's PIN."""

    @abc.abstractmethod
    def process(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        """Answer ``command``, or return None to leave it to the card's ISO layer."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.aid.hex().upper()}>"
