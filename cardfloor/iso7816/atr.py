"""The Answer To Reset (ISO/IEC 7816-3 §8): the one parser of its structure.

:func:`parse_atr` walks T0 and the TDi chain once, to its end, and returns every byte in its
place. What each user then refuses is its own rule, built on this structure: the VSCard host's
(QEMU's length limit), the CCID reader's (libccid's), the card's (TCK).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce
from operator import xor
from typing import Final

#: TS of the direct and the inverse convention.
TS_DIRECT: Final = 0x3B
TS_INVERSE: Final = 0x3F
#: TS and at most 32 further bytes (ISO/IEC 7816-3 §8.2.1).
MAX_ATR_SIZE: Final = 33
#: T=15 in a TDi announces global interface bytes, not a transmission protocol.
T_GLOBAL: Final = 15


class ATRFormatError(ValueError):
    """Bytes that are not a whole ATR; ``field`` says which part, ``value`` what it held."""

    def __init__(self, reason: str, *, field: str, value: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class InterfaceBytes:
    """One group of interface bytes, TAi TBi TCi TDi (None when absent)."""

    TA: int | None = None
    TB: int | None = None
    TC: int | None = None
    TD: int | None = None


@dataclass(frozen=True, slots=True)
class AnswerToReset:
    """A parsed ATR. Build it with :func:`parse_atr`.

    ``tck`` is the byte after the historical bytes, if any, and ``trailing`` what follows it;
    neither is checked by the parser.
    """

    raw: bytes
    groups: tuple[InterfaceBytes, ...]
    historical: bytes
    tck: int | None = None
    trailing: bytes = b""

    @property
    def inverse_convention(self) -> bool:
        """TS is 3F."""
        return self.raw[0] == TS_INVERSE

    @property
    def announced(self) -> tuple[int, ...]:
        """The T of every TDi, in order (T=15 included)."""
        return tuple(group.TD & 0x0F for group in self.groups if group.TD is not None)

    @property
    def protocols(self) -> tuple[int, ...]:
        """What the TDi announce, in order, without repeats (T=15 included); (0,) without TD1."""
        return tuple(dict.fromkeys(self.announced)) or (0,)

    @property
    def transmission_protocols(self) -> tuple[int, ...]:
        """The protocols offered, in order, without T=15; (0,) when none is announced."""
        return tuple(t for t in dict.fromkeys(self.announced) if t != T_GLOBAL) or (0,)

    @property
    def default_protocol(self) -> int:
        """T=0 or T=1: TA2's protocol in specific mode, else the first of them offered."""
        if len(self.groups) > 1 and self.groups[1].TA is not None:
            specific = self.groups[1].TA & 0x0F
            if specific in (0, 1):
                return specific
        return next((t for t in self.protocols if t in (0, 1)), 0)

    @property
    def needs_tck(self) -> bool:
        """TCK must be present: a protocol other than T=0 is announced (ISO/IEC 7816-3 §8.2.5)."""
        return any(t != 0 for t in self.announced)

    @property
    def tck_expected(self) -> int:
        """The TCK that makes the XOR of T0 up to TCK zero."""
        end = len(self.raw) - len(self.trailing) - (self.tck is not None)
        return reduce(xor, self.raw[1:end], 0)

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


def parse_atr(atr: bytes, *, max_size: int = MAX_ATR_SIZE) -> AnswerToReset:
    """Parse ``atr``; raise :class:`ATRFormatError` when it is not a whole one.

    Refused: fewer than 2 or more than ``max_size`` bytes, TS other than 3B/3F, or fewer bytes
    than T0 and the TDi announce.
    """
    size = len(atr)
    if size < 2:
        raise ATRFormatError(
            f"ATR of {size} bytes is shorter than TS and T0", field="length", value=size
        )
    if size > max_size:
        raise ATRFormatError(f"ATR of {size} bytes exceeds {max_size}", field="length", value=size)
    if atr[0] not in (TS_DIRECT, TS_INVERSE):
        raise ATRFormatError(
            f"TS=0x{atr[0]:02X} is neither 0x3B nor 0x3F", field="TS", value=atr[0]
        )
    groups: list[InterfaceBytes] = []
    presence = atr[1] >> 4
    offset = 2
    while presence:
        values: list[int | None] = []
        for bit in (0x1, 0x2, 0x4, 0x8):
            if presence & bit:
                if offset >= size:
                    raise ATRFormatError(
                        f"interface byte at offset {offset} is missing",
                        field="offset",
                        value=offset,
                    )
                values.append(atr[offset])
                offset += 1
            else:
                values.append(None)
        group = InterfaceBytes(*values)
        groups.append(group)
        presence = group.TD >> 4 if group.TD is not None else 0
    historical_length = atr[1] & 0x0F
    end = offset + historical_length
    if size < end:
        raise ATRFormatError(
            f"ATR of {size} bytes lacks the {historical_length} historical bytes T0 announces",
            field="length",
            value=size,
        )
    raw = bytes(atr)
    tck = raw[end] if size > end else None
    return AnswerToReset(raw, tuple(groups), raw[offset:end], tck, raw[end + 1 :])
