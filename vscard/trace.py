"""APDUs as they may appear in logs: hex, with PIN-bearing command data masked.

VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and their ISO variants carry PINs and PUKs;
their header stays visible (it says which reference was tried), their data never is. ENVELOPE
(``C2``/``C3``, ISO/IEC 7816-4:2013 §11.7.2) carries (a part of) another command, which may be
one of those, or the middle of one with no header to tell: all of its data is masked.
"""

from __future__ import annotations

from typing import Final

#: VERIFY (20, 21), CHANGE REFERENCE DATA (24, 25), RESET RETRY COUNTER (2C, 2D), ENVELOPE (C2,
#: C3). The same numbers as :mod:`cacard.pin_commands`, which vscard does not import (a test
#: compares them).
SECRET_INSTRUCTIONS: Final = frozenset({0x20, 0x21, 0x24, 0x25, 0x2C, 0x2D, 0xC2, 0xC3})


def apdu_trace(apdu: bytes) -> str:
    """``apdu`` in hex for a log line, its data masked if it may hold a PIN."""
    if len(apdu) > 5 and apdu[1] in SECRET_INSTRUCTIONS:
        return f"{apdu[:5].hex()}<{len(apdu) - 5} bytes masked>"
    return apdu.hex()


class Trace:
    """Bytes for a debug line, rendered (hex; PINs masked in commands) only when the line is
    written: a filtered-out debug line must not cost a hex copy of every 64 KiB APDU."""

    __slots__ = ("_command", "_data")

    def __init__(self, data: bytes, *, command: bool) -> None:
        self._data = data
        self._command = command

    def __repr__(self) -> str:
        return apdu_trace(self._data) if self._command else self._data.hex()

    __str__ = __repr__


def command_trace(apdu: bytes) -> Trace:
    """A command APDU for a log line (PIN-bearing data masked)."""
    return Trace(apdu, command=True)


def response_trace(response: bytes) -> Trace:
    """A response APDU for a log line."""
    return Trace(response, command=False)
