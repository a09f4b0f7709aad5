"""Protocol parameters: what RDR_to_PC_Parameters reports (bProtocolNum, abProtocolDataStructure).

At APDU level the reader frames nothing itself, so these values only describe the card to a
host that asks; they come from the ATR (as a physical reader after automatic PPS would set
them) and a SetParameters the host sends is checked and kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cardfloor.frozen import copy_by_constructor
from cardfloor.iso7816.atr import AnswerToReset

#: abProtocolDataStructure sizes: T=0 has 5 bytes, T=1 has 7.
STRUCTURE_SIZE: Final = {0: 5, 1: 7}

_DEFAULT_FIDI = 0x11  # Fi 372, Di 1
_DEFAULT_WI = 0x0A  # T=0 waiting integer
_DEFAULT_BWI_CWI = 0x4D  # T=1 BWI 4, CWI 13
_DEFAULT_IFSC = 0x20


@dataclass(frozen=True, slots=True)
class ProtocolParameters:
    """bProtocolNum (0 for T=0, 1 for T=1) and its abProtocolDataStructure."""

    bProtocolNum: int
    abProtocolDataStructure: bytes

    def __post_init__(self) -> None:
        expected = STRUCTURE_SIZE.get(self.bProtocolNum)
        if expected is None:
            raise ValueError(f"bProtocolNum={self.bProtocolNum} is neither T=0 nor T=1")
        if len(self.abProtocolDataStructure) != expected:
            raise ValueError(
                f"T={self.bProtocolNum} abProtocolDataStructure is {expected} bytes, "
                f"got {len(self.abProtocolDataStructure)}"
            )

    @classmethod
    def from_atr(cls, atr: AnswerToReset) -> ProtocolParameters:
        """The parameters of the ATR's default protocol, as CCID rev 1.1 §6.1.7 lays them out."""
        fidi = atr.global_byte("TA", 1)
        fidi = _DEFAULT_FIDI if fidi is None else fidi
        guard = atr.global_byte("TC", 1) or 0
        convention = 0x02 if atr.inverse_convention else 0x00
        if atr.default_protocol == 0:
            wi = atr.global_byte("TC", 2)
            # bmFindexDindex, bmTCCKST0, bGuardTimeT0, bWaitingIntegerT0, bClockStop
            return cls(0, bytes([fidi, convention, guard, _DEFAULT_WI if wi is None else wi, 0]))
        crc = (atr.protocol_byte("TC", 1) or 0) & 0x01
        bwi_cwi = atr.protocol_byte("TB", 1)
        ifsc = atr.protocol_byte("TA", 1)
        # bmFindexDindex, bmTCCKST1, bGuardTimeT1, bmWaitingIntegersT1, bClockStop, bIFSC,
        # bNadValue
        return cls(
            1,
            bytes(
                [
                    fidi,
                    0x10 | convention | crc,
                    guard,
                    _DEFAULT_BWI_CWI if bwi_cwi is None else bwi_cwi,
                    0,
                    _DEFAULT_IFSC if ifsc is None else ifsc,
                    0,
                ]
            ),
        )


# Both builds copy and pickle these values alike (see copy_by_constructor).
copy_by_constructor(ProtocolParameters)
