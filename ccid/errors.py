"""Exceptions raised by the CCID codec and reader."""

from __future__ import annotations


class CCIDError(Exception):
    """Bytes that break CCID framing: the message cannot be parsed, so it cannot be answered.

    ``field`` names what was wrong (``"dwLength"``, ``"bStatus"``...) and ``value`` is what
    the peer sent there. Semantic faults in a well-framed command (a wrong bSlot, a bad
    bPowerSelect) are not errors: the reader answers them with bError, as the spec says.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        shown = (
            f"0x{value:02X}" if isinstance(value, int) and not isinstance(value, bool) else value
        )
        if isinstance(shown, bytes | bytearray | memoryview):
            shown = bytes(shown).hex(" ").upper() or "(empty)"
        super().__init__(f"{reason}: {field}={shown}")
        self.reason = reason
        self.field = field
        self.value = value
