"""The structural ATR check a host applies to VSC_ATR before it marks a card inserted."""

from __future__ import annotations

from cardfloor.iso7816.atr import ATRFormatError, parse_atr

from .constants import MAX_ATR_SIZE


def atr_problem(atr: bytes) -> str | None:
    """Return why a host must refuse ``atr``, or None when it is acceptable.

    The rule is QEMU's (length at most 40, TS 3B or 3F, every interface and historical byte
    that T0 and the TDi announce is present; TCK and trailing bytes are not checked), except
    that the TDi chain is walked correctly and to its end
    (:func:`cardfloor.iso7816.atr.parse_atr`): QEMU's ``check_atr``
    (``hw/usb/ccid-card-passthru.c``) reads each TDi one byte too far and stops after two
    levels, so it refuses some valid ATRs such as ``3B 80 00 F0``.
    """
    try:
        parse_atr(atr, max_size=MAX_ATR_SIZE)
    except ATRFormatError as error:
        return error.reason
    return None
