"""Exceptions raised by the CCID codec and reader."""

from __future__ import annotations

from cardfloor.errors import field_message


class CCIDError(Exception):
    """What the host sent cannot be answered in CCID, so the transfer is refused (stalled):
    bytes that break CCID framing, or an ABORT class request for a slot that does not exist.

    ``field`` names what was wrong (``"dwLength"``, ``"bStatus"``...) and ``value`` is what
    the peer sent there. Semantic faults in a well-framed bulk-OUT command (a wrong bSlot, a bad
    bPowerSelect) are not errors: the reader answers them with bError, as the spec says.
    """

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        super().__init__(field_message(reason, field, value, hex_digits=2))
        self.reason = reason
        self.field = field
        self.value = value
