"""Moved to :mod:`cardfloor.iso7816.apdu`; this name stays until no module imports it."""

from cardfloor.iso7816.apdu import (
    APDUFormatError,
    CommandAPDU,
    Response,
    StatusWord,
    instruction,
    status,
    success,
)

__all__ = [
    "APDUFormatError",
    "CommandAPDU",
    "Response",
    "StatusWord",
    "instruction",
    "status",
    "success",
]
