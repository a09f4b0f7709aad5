"""What the client's side calls a card: an emulated card, a PKCS#11 or NSS-backed one, or the
card in a real PC/SC reader. The readers, the PIN guard and compare mode all take this."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class LocalCard(Protocol):
    """A card the client owns: an ATR and a way to send it APDUs."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> None:
        """The card goes into a reader: cold reset (an emulated card forgets its login)."""
        ...

    async def transmit(self, apdu: bytes) -> bytes:
        """Send a command APDU; return the response with SW1 SW2 (unchanged)."""
        ...

    async def cold_reset(self) -> None:
        """The far side's reader powered the card off and on (a guest's reboot, a host's
        ``SCARD_RESET_CARD``): the card must come back with nothing verified and nothing
        selected. A real card is reset through its reader (``SCardReconnect``)."""
        ...


@runtime_checkable
class ProtocolAware(Protocol):
    """A card that must be told the transmission protocol its reader runs (0 for T=0, 1 for
    T=1): an emulated card answers a command without Le differently under T=1. A real card
    learns it from its reader."""

    protocol: int
