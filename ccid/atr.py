"""The ATR as a reader reads it: its structure, the protocols it offers, its interface bytes.

The reader needs the ATR twice: to refuse one libccid cannot take (over 33 bytes, or cut
short), and to derive the protocol parameters it reports in RDR_to_PC_Parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import MAX_ATR_SIZE

_TS_DIRECT = 0x3B
_TS_INVERSE = 0x3F


@dataclass(frozen=True, slots=True)
class InterfaceBytes:
    """One group of interface bytes, TAi TBi TCi TDi (None when absent)."""

    TA: int | None = None
    TB: int | None = None
    TC: int | None = None
    TD: int | None = None


@dataclass(frozen=True, slots=True)
class AnswerToReset:
    """A parsed ATR. Build it with :func:`parse_atr`."""

    raw: bytes
    groups: tuple[InterfaceBytes, ...]
    historical: bytes

    @property
    def inverse_convention(self) -> bool:
        """TS is 3F."""
        return self.raw[0] == _TS_INVERSE

    @property
    def protocols(self) -> tuple[int, ...]:
        """Protocols the TDi offer, in order, without repeats; (0,) when TD1 is absent."""
        offered: list[int] = []
        for group in self.groups:
            if group.TD is not None and (group.TD & 0x0F) not in offered:
                offered.append(group.TD & 0x0F)
        return tuple(offered) or (0,)

    @property
    def default_protocol(self) -> int:
        """T=0 or T=1: TA2's protocol in specific mode, else the first of them offered."""
        if len(self.groups) > 1 and self.groups[1].TA is not None:
            specific = self.groups[1].TA & 0x0F
            if specific in (0, 1):
                return specific
        return next((t for t in self.protocols if t in (0, 1)), 0)

    def global_byte(self, name: str, index: int) -> int | None:
        """TA1, TB1, TC1, TA2...: ``global_byte("TC", 2)`` is TC2 (None when absent)."""
        if index > len(self.groups):
            return None
        value: int | None = getattr(self.groups[index - 1], name)
        return value

    def protocol_byte(self, name: str, protocol: int) -> int | None:
        """The first TAi/TBi/TCi (i >= 3) that follows a TD(i-1) announcing ``protocol``."""
        for previous, group in zip(self.groups[1:], self.groups[2:], strict=False):
            if previous.TD is not None and protocol == previous.TD & 0x0F:
                value: int | None = getattr(group, name)
                if value is not None:
                    return value
        return None


def parse_atr(atr: bytes) -> AnswerToReset:
    """Parse ``atr``; raise :class:`ValueError` saying why a reader must refuse it.

    Refused: fewer than 2 or more than 33 bytes (libccid reads IccPowerOn's answer into
    10 + 33 bytes), TS other than 3B/3F, or fewer bytes than T0 and the TDi announce.
    TCK and trailing bytes are not checked, as QEMU and most readers do not.
    """
    if len(atr) < 2:
        raise ValueError(f"ATR of {len(atr)} bytes is shorter than TS and T0")
    if len(atr) > MAX_ATR_SIZE:
        raise ValueError(f"ATR of {len(atr)} bytes exceeds {MAX_ATR_SIZE}")
    if atr[0] not in (_TS_DIRECT, _TS_INVERSE):
        raise ValueError(f"TS=0x{atr[0]:02X} is neither 0x3B nor 0x3F")
    groups: list[InterfaceBytes] = []
    presence = atr[1] >> 4
    offset = 2
    while presence:
        values: list[int | None] = []
        for bit in (0x1, 0x2, 0x4, 0x8):
            if presence & bit:
                if offset >= len(atr):
                    raise ValueError(f"interface byte at offset {offset} is missing")
                values.append(atr[offset])
                offset += 1
            else:
                values.append(None)
        group = InterfaceBytes(*values)
        groups.append(group)
        presence = group.TD >> 4 if group.TD is not None else 0
    historical_length = atr[1] & 0x0F
    if len(atr) < offset + historical_length:
        raise ValueError(
            f"ATR of {len(atr)} bytes lacks the {historical_length} historical bytes T0 announces"
        )
    return AnswerToReset(bytes(atr), tuple(groups), bytes(atr[offset : offset + historical_length]))
