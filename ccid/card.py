"""The card side of a reader: what any card must offer, and an in-memory card for tests.

A reader does not care where its card lives: a real card reached over VSCard (QEMU's
ccid-card-passthru protocol), an in-process ``cacard`` emulator, or :class:`MemoryCard`.
Insertion and removal are the reader's events (:meth:`ccid.device.CCIDDevice.insert`).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

#: An ATR offering T=1 only (IFSC 254, BWI 4, CWI 5), so pcscd picks T=1 and OpenSC sends
#: extended APDUs: 3B, T0 (TD1), TD1 (TD2, T=1), TD2 (TA3 TB3, T=1), TA3, TB3, TCK.
TEST_ATR: Final = bytes.fromhex("3B 80 81 31 FE 45 8B")


class ICC(Protocol):
    """A smart card in the reader's slot, as the reader uses it: the CCID spec's ICC.

    Anything with these three members fits: :class:`MemoryCard`, ``cacard``'s emulator
    (``daemons.emulated_cards.EmulatedCard``), a remote card over VSCard.
    """

    @property
    def atr(self) -> bytes:
        """The Answer To Reset: at most 33 bytes, TS 3B or 3F (libccid's limits)."""
        ...

    async def transmit(self, apdu: bytes) -> bytes:
        """Answer a command APDU with the response data and SW1 SW2.

        Raising makes the reader report the card mute (bError ICC_MUTE) for this APDU. The
        call is cancelled when the card is removed, the host aborts, or the USB bus resets.
        """
        ...

    def reset(self) -> None:
        """The reader powered the card up or down: forget volatile state (selected
        applets, verified PINs), as a real card does. A remote card may do nothing.

        It runs inside the reader's step, so it must return at once.
        """
        ...


Responder = Callable[[bytes], bytes | Awaitable[bytes]]
"""Computes a :class:`MemoryCard`'s response to one APDU, directly or as a coroutine."""


def _success(apdu: bytes) -> bytes:
    return b"\x90\x00"


class MemoryCard:
    """An :class:`ICC` in memory: each APDU is answered by ``respond`` (9000 by default).

    It remembers the last ``history`` APDUs it received and how often it was reset, so tests
    can check what reached the card.
    """

    def __init__(
        self, atr: bytes = TEST_ATR, respond: Responder = _success, *, history: int = 100
    ) -> None:
        self._atr = atr
        self._respond = respond
        self.apdus: deque[bytes] = deque(maxlen=history)
        """The APDUs received, oldest first."""
        self.resets = 0
        """How many times :meth:`reset` was called."""

    @property
    def atr(self) -> bytes:
        return self._atr

    async def transmit(self, apdu: bytes) -> bytes:
        self.apdus.append(apdu)
        response = self._respond(apdu)
        if inspect.isawaitable(response):
            return await response
        return response

    def reset(self) -> None:
        self.resets += 1
