"""The structural ATR check a host applies to VSC_ATR before it marks a card inserted."""

from __future__ import annotations

from .constants import MAX_ATR_SIZE

_TS_VALUES = frozenset({0x3B, 0x3F})


def atr_problem(atr: bytes) -> str | None:
    """Return why a host must refuse ``atr``, or None when it is acceptable.

    The rule is QEMU's (length at most 40, TS 3B or 3F, every interface and historical byte
    that T0 and the TDi announce is present; TCK and trailing bytes are not checked), except
    that the TDi chain is walked correctly and to its end: QEMU reads each TDi one byte too
    far and stops after two levels, so it refuses some valid ATRs such as ``3B 80 00 F0``.
    """
    if len(atr) < 2:
        return f"ATR of {len(atr)} bytes is shorter than TS and T0"
    if len(atr) > MAX_ATR_SIZE:
        return f"ATR of {len(atr)} bytes exceeds {MAX_ATR_SIZE}"
    if atr[0] not in _TS_VALUES:
        return f"TS=0x{atr[0]:02X} is neither 0x3B nor 0x3F"
    historical = atr[1] & 0x0F
    presence = atr[1] >> 4
    index = 1  # position of the byte that announced ``presence`` (T0, then each TDi)
    while presence:
        index += bin(presence).count("1")
        if presence & 0x8:
            if index >= len(atr):
                return f"TD byte at offset {index} is missing"
            presence = atr[index] >> 4
        else:
            presence = 0
    needed = index + 1 + historical
    if len(atr) < needed:
        return f"ATR of {len(atr)} bytes lacks the interface/historical bytes T0 announces"
    return None
