"""CCID bulk and interrupt messages as immutable values, one class per bMessageType.

Classes and fields are named as CCID rev 1.1 names them (``PC_to_RDR_XfrBlock.wLevelParameter``),
so code reads against the spec and libccid's logs. Values are checked when a message is built;
RFU bytes are not kept (they are sent as zero and ignored on receipt).

Every command keeps its ``abData`` even where the spec wants none: a command with a wrong
dwLength is well framed, and the reader answers it with bError 1 rather than dropping it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .constants import (
    ChainParameter,
    ClockStatus,
    CommandStatus,
    ICCStatus,
    LevelParameter,
    MessageType,
)

_U32_MAX = 0xFFFFFFFF


def _check_u8(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{name} must fit in a byte, got {value}")


def _check_u16(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{name} must fit in a u16, got {value}")


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= _U32_MAX:
        raise ValueError(f"{name} must fit in a u32, got {value}")


def _check_header(bSlot: int, bSeq: int, data: bytes) -> None:
    _check_u8("bSlot", bSlot)
    _check_u8("bSeq", bSeq)
    _check_u32("dwLength", len(data))


# --- PC_to_RDR: commands on bulk-OUT --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PC_to_RDR_IccPowerOn:
    """Activate the card; answered by a DataBlock carrying the ATR."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_IccPowerOn

    bSlot: int
    bSeq: int
    bPowerSelect: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bPowerSelect", self.bPowerSelect)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_IccPowerOff:
    """Deactivate the card; answered by a SlotStatus."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_IccPowerOff

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_GetSlotStatus:
    """Ask for the slot's state; answered by a SlotStatus."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_GetSlotStatus

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_XfrBlock:
    """An APDU (or one block of a chained one) for the card; answered by a DataBlock."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_XfrBlock

    bSlot: int
    bSeq: int
    abData: bytes = b""
    bBWI: int = 0
    wLevelParameter: int = LevelParameter.BEGIN_AND_END

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bBWI", self.bBWI)
        _check_u16("wLevelParameter", self.wLevelParameter)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_GetParameters:
    """Ask for the protocol parameters; answered by a Parameters."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_GetParameters

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_ResetParameters:
    """Restore the protocol parameters derived from the ATR; answered by a Parameters."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_ResetParameters

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_SetParameters:
    """Set the protocol and its abProtocolDataStructure (5 bytes T=0, 7 bytes T=1)."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_SetParameters

    bSlot: int
    bSeq: int
    bProtocolNum: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bProtocolNum", self.bProtocolNum)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_Escape:
    """A vendor command for the reader itself; answered by an RDR_to_PC_Escape."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_Escape

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_IccClock:
    """Stop or restart the card's clock; answered by a SlotStatus."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_IccClock

    bSlot: int
    bSeq: int
    bClockCommand: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bClockCommand", self.bClockCommand)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_T0APDU:
    """Change the class bytes of T=0 GET RESPONSE and ENVELOPE; answered by a SlotStatus."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_T0APDU

    bSlot: int
    bSeq: int
    bmChanges: int = 0
    bClassGetResponse: int = 0
    bClassEnvelope: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bmChanges", self.bmChanges)
        _check_u8("bClassGetResponse", self.bClassGetResponse)
        _check_u8("bClassEnvelope", self.bClassEnvelope)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_Secure:
    """PIN verification or modification on the reader's keypad; answered by a DataBlock."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_Secure

    bSlot: int
    bSeq: int
    abData: bytes = b""
    bBWI: int = 0
    wLevelParameter: int = 0

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bBWI", self.bBWI)
        _check_u16("wLevelParameter", self.wLevelParameter)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_Mechanical:
    """Accept, eject, capture, lock or unlock the card; answered by a SlotStatus."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_Mechanical

    bSlot: int
    bSeq: int
    bFunction: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bFunction", self.bFunction)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_Abort:
    """The bulk half of the abort procedure (the other half is the ABORT class request)."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_Abort

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class PC_to_RDR_SetDataRateAndClockFrequency:
    """Ask for a clock frequency and data rate; ``abData`` holds the two LE u32 words."""

    TYPE: ClassVar[MessageType] = MessageType.PC_to_RDR_SetDataRateAndClockFrequency

    bSlot: int
    bSeq: int
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)


@dataclass(frozen=True, slots=True)
class UnknownCommand:
    """A well-framed bulk-OUT message whose bMessageType CCID does not define.

    The reader answers it with a SlotStatus, failed, bError CMD_NOT_SUPPORTED.
    """

    bMessageType: int
    bSlot: int
    bSeq: int
    abParameters: bytes = b"\0\0\0"
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_u8("bMessageType", self.bMessageType)
        if len(self.abParameters) != 3:
            raise ValueError(f"abParameters must be 3 bytes, got {len(self.abParameters)}")


Command = (
    PC_to_RDR_IccPowerOn
    | PC_to_RDR_IccPowerOff
    | PC_to_RDR_GetSlotStatus
    | PC_to_RDR_XfrBlock
    | PC_to_RDR_GetParameters
    | PC_to_RDR_ResetParameters
    | PC_to_RDR_SetParameters
    | PC_to_RDR_Escape
    | PC_to_RDR_IccClock
    | PC_to_RDR_T0APDU
    | PC_to_RDR_Secure
    | PC_to_RDR_Mechanical
    | PC_to_RDR_Abort
    | PC_to_RDR_SetDataRateAndClockFrequency
    | UnknownCommand
)
"""Anything the host sends on bulk-OUT."""


# --- RDR_to_PC: responses on bulk-IN --------------------------------------------------------


def _check_status(response: Response) -> None:
    # Plain ints are accepted and turned into the enums (ValueError for an RFU value).
    try:
        icc = ICCStatus(response.bmICCStatus)
    except ValueError:
        raise ValueError(f"bmICCStatus {response.bmICCStatus!r} is RFU") from None
    try:
        command = CommandStatus(response.bmCommandStatus)
    except ValueError:
        raise ValueError(f"bmCommandStatus {response.bmCommandStatus!r} is RFU") from None
    object.__setattr__(response, "bmICCStatus", icc)
    object.__setattr__(response, "bmCommandStatus", command)
    _check_u8("bError", response.bError)


@dataclass(frozen=True, slots=True)
class RDR_to_PC_DataBlock:
    """The answer to IccPowerOn (the ATR), XfrBlock (the response APDU) and Secure."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_DataBlock

    bSlot: int
    bSeq: int
    bmICCStatus: ICCStatus
    bmCommandStatus: CommandStatus = CommandStatus.PROCESSED
    bError: int = 0
    bChainParameter: int = ChainParameter.BEGIN_AND_END
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_status(self)
        _check_u8("bChainParameter", self.bChainParameter)

    @property
    def bStatus(self) -> int:
        """bmICCStatus in bits 0-1, bmCommandStatus in bits 6-7."""
        return self.bmICCStatus | self.bmCommandStatus << 6


@dataclass(frozen=True, slots=True)
class RDR_to_PC_SlotStatus:
    """The answer to IccPowerOff, GetSlotStatus, IccClock, T0APDU, Mechanical and Abort."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_SlotStatus

    bSlot: int
    bSeq: int
    bmICCStatus: ICCStatus
    bmCommandStatus: CommandStatus = CommandStatus.PROCESSED
    bError: int = 0
    bClockStatus: int = ClockStatus.RUNNING

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, b"")
        _check_status(self)
        _check_u8("bClockStatus", self.bClockStatus)

    @property
    def bStatus(self) -> int:
        """bmICCStatus in bits 0-1, bmCommandStatus in bits 6-7."""
        return self.bmICCStatus | self.bmCommandStatus << 6


@dataclass(frozen=True, slots=True)
class RDR_to_PC_Parameters:
    """The answer to Get/Reset/SetParameters: the protocol and its data structure."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_Parameters

    bSlot: int
    bSeq: int
    bmICCStatus: ICCStatus
    bmCommandStatus: CommandStatus = CommandStatus.PROCESSED
    bError: int = 0
    bProtocolNum: int = 0
    abProtocolDataStructure: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abProtocolDataStructure)
        _check_status(self)
        _check_u8("bProtocolNum", self.bProtocolNum)

    @property
    def bStatus(self) -> int:
        """bmICCStatus in bits 0-1, bmCommandStatus in bits 6-7."""
        return self.bmICCStatus | self.bmCommandStatus << 6


@dataclass(frozen=True, slots=True)
class RDR_to_PC_Escape:
    """The answer to PC_to_RDR_Escape."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_Escape

    bSlot: int
    bSeq: int
    bmICCStatus: ICCStatus
    bmCommandStatus: CommandStatus = CommandStatus.PROCESSED
    bError: int = 0
    abData: bytes = b""

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, self.abData)
        _check_status(self)

    @property
    def bStatus(self) -> int:
        """bmICCStatus in bits 0-1, bmCommandStatus in bits 6-7."""
        return self.bmICCStatus | self.bmCommandStatus << 6


@dataclass(frozen=True, slots=True)
class RDR_to_PC_DataRateAndClockFrequency:
    """The answer to SetDataRateAndClockFrequency: the values now in use."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_DataRateAndClockFrequency

    bSlot: int
    bSeq: int
    bmICCStatus: ICCStatus
    bmCommandStatus: CommandStatus = CommandStatus.PROCESSED
    bError: int = 0
    dwClockFrequency: int = 0
    dwDataRate: int = 0

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, b"")
        _check_status(self)
        _check_u32("dwClockFrequency", self.dwClockFrequency)
        _check_u32("dwDataRate", self.dwDataRate)

    @property
    def bStatus(self) -> int:
        """bmICCStatus in bits 0-1, bmCommandStatus in bits 6-7."""
        return self.bmICCStatus | self.bmCommandStatus << 6


Response = (
    RDR_to_PC_DataBlock
    | RDR_to_PC_SlotStatus
    | RDR_to_PC_Parameters
    | RDR_to_PC_Escape
    | RDR_to_PC_DataRateAndClockFrequency
)
"""Anything the reader sends on bulk-IN."""


# --- RDR_to_PC: interrupt-IN -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RDR_to_PC_NotifySlotChange:
    """A card came or went: two bits per slot, bit 0 present, bit 1 changed.

    A one-slot reader sends one bmSlotICCState byte.
    """

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_NotifySlotChange

    bmSlotICCState: bytes

    def __post_init__(self) -> None:
        if not self.bmSlotICCState:
            raise ValueError("bmSlotICCState needs at least one byte")

    @classmethod
    def for_slot0(cls, *, present: bool, changed: bool) -> RDR_to_PC_NotifySlotChange:
        """The message of a one-slot reader."""
        return cls(bytes([int(present) | int(changed) << 1]))


@dataclass(frozen=True, slots=True)
class RDR_to_PC_HardwareError:
    """A hardware fault in a slot (overcurrent). This reader never sends it."""

    TYPE: ClassVar[MessageType] = MessageType.RDR_to_PC_HardwareError

    bSlot: int
    bSeq: int
    bHardwareErrorCode: int

    def __post_init__(self) -> None:
        _check_header(self.bSlot, self.bSeq, b"")
        _check_u8("bHardwareErrorCode", self.bHardwareErrorCode)


InterruptMessage = RDR_to_PC_NotifySlotChange | RDR_to_PC_HardwareError
"""Anything the reader sends on interrupt-IN."""

Message = Command | Response | InterruptMessage
"""Any CCID message."""
