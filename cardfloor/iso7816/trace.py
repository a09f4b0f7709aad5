"""APDUs as they may appear in logs: hex, with PIN-bearing command data masked.

VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and their odd variants carry PINs and PUKs;
their header stays visible (it says which reference was tried), their data never is. ENVELOPE
(``C2``/``C3``, ISO/IEC 7816-4:2013 §11.7.2) carries (a part of) another command, which may be
one of those, or the middle of one with no header to tell: all of its data is masked.
"""

from __future__ import annotations

from .apdu import instruction
from .instructions import SECRET_INSTRUCTIONS

#: CLA INS P1 P2 and the first length byte: what stays visible of a secret command.
_VISIBLE = 5


def apdu_trace(apdu: bytes) -> str:
    """``apdu`` in hex for a log line, its data masked if it may hold a PIN.

    The instruction is read as the card's parser reads it (:func:`~.apdu.instruction`), whatever
    the lengths say: a malformed VERIFY is masked too.
    """
    if len(apdu) > _VISIBLE and instruction(apdu) in SECRET_INSTRUCTIONS:
        return f"{apdu[:_VISIBLE].hex()}<{len(apdu) - _VISIBLE} bytes masked>"
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
