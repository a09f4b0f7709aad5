"""What a host may do to a card: the PIN guard and an optional APDU allow list.

A malicious or broken guest can block a real card by looping wrong PINs. The guard asks the card
how many tries are left (VERIFY without data, ISO 7816-4 §11.5.6) before it forwards a VERIFY
with data, and answers ``6983`` (authentication method blocked) itself when that VERIFY could
leave fewer than ``keep`` tries. The card keeps its last tries for its owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

if TYPE_CHECKING:
    from .local_readers import LocalCard

log = structlog.get_logger("daemons.vscclient")

INS_VERIFY: Final = 0x20
INS_SELECT: Final = 0xA4
#: Authentication method blocked: what the host sees instead of a VERIFY that was not sent.
SW_BLOCKED: Final = b"\x69\x83"
SW_INS_NOT_SUPPORTED: Final = b"\x6d\x00"
SW_FILE_NOT_FOUND: Final = b"\x6a\x82"


def tries_left(status: bytes) -> int | None:
    """Tries left per a VERIFY status answer: ``63Cx`` gives x, ``6983`` 0, else unknown."""
    if len(status) != 2:
        return None
    if status[0] == 0x63 and status[1] & 0xF0 == 0xC0:
        return status[1] & 0x0F
    if status == SW_BLOCKED:
        return 0
    return None


@dataclass(frozen=True)
class ApduPolicy:
    """Which commands may reach the card: all when a set is empty."""

    instructions: frozenset[int] = frozenset()
    aids: frozenset[bytes] = frozenset()

    def refusal(self, apdu: bytes) -> bytes | None:
        """The status word to answer instead of forwarding ``apdu``, or None to forward it."""
        if len(apdu) < 4:
            return None  # the card itself answers malformed APDUs
        if self.instructions and apdu[1] not in self.instructions:
            return SW_INS_NOT_SUPPORTED
        if self.aids and apdu[1] == INS_SELECT and apdu[2] == 0x04:
            aid = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
            if not any(aid.startswith(allowed) for allowed in self.aids):
                return SW_FILE_NOT_FOUND
        return None


@dataclass(frozen=True)
class CardGuard:
    """Stands between the host and a card: the PIN guard (``keep`` tries; 0 disables it) and
    ``policy``."""

    keep: int = 1
    policy: ApduPolicy = field(default_factory=ApduPolicy)

    async def transmit(self, card: LocalCard, apdu: bytes) -> bytes:
        """Forward ``apdu`` to ``card``, unless the policy or the PIN guard answers it."""
        refusal = self.policy.refusal(apdu)
        if refusal is not None:
            log.warning("vscclient.apdu_refused", ins=f"{apdu[1]:02x}", sw=refusal.hex())
            return refusal
        if self.keep and len(apdu) > 5 and apdu[1] == INS_VERIFY and apdu[4]:
            left = tries_left(await card.transmit(apdu[:4]))
            if left is not None and left <= self.keep:
                log.warning(
                    "vscclient.pin_guard",
                    reference=f"{apdu[3]:02x}",
                    tries_left=left,
                    keep=self.keep,
                    action="VERIFY answered 6983 without reaching the card",
                )
                return SW_BLOCKED
        return await card.transmit(apdu)
