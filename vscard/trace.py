"""APDUs as they may appear in logs: hex, with PIN-bearing command data masked.

VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER and their ISO variants carry PINs and PUKs;
their header stays visible (it says which reference was tried), their data never is.
"""

from __future__ import annotations

from typing import Final

#: VERIFY (20, 21), CHANGE REFERENCE DATA (24, 25), RESET RETRY COUNTER (2C, 2D).
SECRET_INSTRUCTIONS: Final = frozenset({0x20, 0x21, 0x24, 0x25, 0x2C, 0x2D})


def apdu_trace(apdu: bytes) -> str:
    """``apdu`` in hex for a log line, its data masked if it may hold a PIN."""
    if len(apdu) > 5 and apdu[1] in SECRET_INSTRUCTIONS:
        return f"{apdu[:5].hex()}<{len(apdu) - 5} bytes masked>"
    return apdu.hex()
