"""Wire constants of USB CCID rev 1.1 (the "Smart Card CCID" class specification).

Names follow the specification (and libccid's ``ccid.h``), so a value seen in a capture or a
pcscd log can be looked up here by the name the spec gives it.
"""

from __future__ import annotations

import enum
from typing import Final

#: Bytes of every bulk message header: bMessageType, dwLength (LE), bSlot, bSeq and 3 more.
HEADER_SIZE: Final = 10

#: dwMaxCCIDMessageLength we advertise, as QEMU: 10 + 65,544, so any ISO 7816-4 extended
#: APDU (and libccid's 65,546-byte command buffer less its spare) passes in one message.
DEFAULT_MAX_MESSAGE_LENGTH: Final = 65554

#: The smallest dwMaxCCIDMessageLength libccid works with at APDU level: 10 + 261 (a short
#: case 4 APDU with Le). Below that even short APDUs would need chaining.
MIN_MAX_MESSAGE_LENGTH: Final = 271

#: The longest APDU the reader handles, command or response, chained or not:
#: CLA INS P1 P2, 3-byte Lc, 65,535 data bytes, 2-byte Le. A response is at most 65,538.
MAX_APDU_SIZE: Final = 65544

#: libccid reads IccPowerOn's answer into a 43-byte buffer: 10 header bytes and the ATR.
MAX_ATR_SIZE: Final = 33

#: RDR_to_PC_NotifySlotChange for one slot: bMessageType and one bmSlotICCState byte.
NOTIFY_SLOT_CHANGE_SIZE: Final = 2

#: bError of a time extension: libccid multiplies its read timeout by it for the next read.
TIME_EXTENSION_MULTIPLIER: Final = 1


class MessageType(enum.IntEnum):
    """bMessageType of bulk and interrupt messages."""

    # PC_to_RDR, on the bulk-OUT endpoint
    PC_to_RDR_SetParameters = 0x61
    PC_to_RDR_IccPowerOn = 0x62
    PC_to_RDR_IccPowerOff = 0x63
    PC_to_RDR_GetSlotStatus = 0x65
    PC_to_RDR_Secure = 0x69
    PC_to_RDR_T0APDU = 0x6A
    PC_to_RDR_Escape = 0x6B
    PC_to_RDR_GetParameters = 0x6C
    PC_to_RDR_ResetParameters = 0x6D
    PC_to_RDR_IccClock = 0x6E
    PC_to_RDR_XfrBlock = 0x6F
    PC_to_RDR_Mechanical = 0x71
    PC_to_RDR_Abort = 0x72
    PC_to_RDR_SetDataRateAndClockFrequency = 0x73
    # RDR_to_PC, on the bulk-IN endpoint
    RDR_to_PC_DataBlock = 0x80
    RDR_to_PC_SlotStatus = 0x81
    RDR_to_PC_Parameters = 0x82
    RDR_to_PC_Escape = 0x83
    RDR_to_PC_DataRateAndClockFrequency = 0x84
    # RDR_to_PC, on the interrupt-IN endpoint
    RDR_to_PC_NotifySlotChange = 0x50
    RDR_to_PC_HardwareError = 0x51


class ICCStatus(enum.IntEnum):
    """bmICCStatus, bits 0-1 of bStatus."""

    PRESENT_ACTIVE = 0
    PRESENT_INACTIVE = 1
    NOT_PRESENT = 2


class CommandStatus(enum.IntEnum):
    """bmCommandStatus, bits 6-7 of bStatus."""

    PROCESSED = 0
    FAILED = 1
    TIME_EXTENSION = 2


class SlotError(enum.IntEnum):
    """bError when bmCommandStatus is FAILED (CCID rev 1.1 table 6.2-2).

    Values 0x01-0x7F give the offset of the field that was wrong (1 dwLength, 5 bSlot, 7 the
    first command-specific byte, 8 wLevelParameter, 10 and 14 the two words of
    SetDataRateAndClockFrequency). CMD_NOT_SUPPORTED (0) is also bError's value on success.
    """

    CMD_NOT_SUPPORTED = 0x00
    BAD_DWLENGTH = 0x01
    BAD_SLOT = 0x05
    BAD_SEQ = 0x06
    #: The command-specific byte at offset 7: bPowerSelect, bProtocolNum or bClockCommand.
    BAD_OFFSET_7 = 0x07
    BAD_LEVELPARAMETER = 0x08
    BAD_CLOCK_FREQUENCY = 0x0A
    BAD_DATA_RATE = 0x0E
    CMD_SLOT_BUSY = 0xE0
    PIN_CANCELLED = 0xEF
    PIN_TIMEOUT = 0xF0
    BUSY_WITH_AUTO_SEQUENCE = 0xF2
    DEACTIVATED_PROTOCOL = 0xF3
    PROCEDURE_BYTE_CONFLICT = 0xF4
    ICC_CLASS_NOT_SUPPORTED = 0xF5
    ICC_PROTOCOL_NOT_SUPPORTED = 0xF6
    BAD_ATR_TCK = 0xF7
    BAD_ATR_TS = 0xF8
    HW_ERROR = 0xFB
    XFR_OVERRUN = 0xFC
    XFR_PARITY_ERROR = 0xFD
    ICC_MUTE = 0xFE
    CMD_ABORTED = 0xFF


class LevelParameter(enum.IntEnum):
    """wLevelParameter of PC_to_RDR_XfrBlock at extended APDU level: command chaining."""

    #: The command APDU begins and ends with this command.
    BEGIN_AND_END = 0x0000
    #: The command APDU begins with this command and continues in the next one.
    BEGIN = 0x0001
    #: This abData continues a command APDU and ends it.
    END = 0x0002
    #: This abData continues a command APDU and another block follows.
    CONTINUE = 0x0003
    #: Empty abData: the host asks for the next block of a chained response.
    NEXT_RESPONSE = 0x0010


class ChainParameter(enum.IntEnum):
    """bChainParameter of RDR_to_PC_DataBlock at extended APDU level: response chaining."""

    BEGIN_AND_END = 0x00
    BEGIN = 0x01
    END = 0x02
    CONTINUE = 0x03
    #: Empty abData: the reader expects the next block of a chained command.
    NEXT_COMMAND = 0x10


class ClockStatus(enum.IntEnum):
    """bClockStatus of RDR_to_PC_SlotStatus."""

    RUNNING = 0
    STOPPED_LOW = 1
    STOPPED_HIGH = 2
    STOPPED_UNKNOWN = 3


class PowerSelect(enum.IntEnum):
    """bPowerSelect of PC_to_RDR_IccPowerOn."""

    AUTOMATIC = 0
    V5_0 = 1
    V3_0 = 2
    V1_8 = 3


class ClockCommand(enum.IntEnum):
    """bClockCommand of PC_to_RDR_IccClock."""

    RESTART = 0
    STOP = 1


class ClassRequest(enum.IntEnum):
    """CCID class-specific control requests (bRequest), addressed to the interface."""

    ABORT = 0x01
    GET_CLOCK_FREQUENCIES = 0x02
    GET_DATA_RATES = 0x03


class Feature(enum.IntFlag):
    """dwFeatures bits of the CCID class descriptor. The 0x70000 field is the exchange level."""

    AUTO_CONFIGURATION_FROM_ATR = 0x00000002
    AUTO_ACTIVATION = 0x00000004
    AUTO_VOLTAGE = 0x00000008
    AUTO_CLOCK = 0x00000010
    AUTO_BAUD = 0x00000020
    AUTO_PPS_PROPRIETARY = 0x00000040
    AUTO_PPS_CURRENT = 0x00000080
    CLOCK_STOP = 0x00000100
    NAD_OTHER_THAN_ZERO = 0x00000200
    AUTO_IFSD = 0x00000400
    LEVEL_TPDU = 0x00010000
    LEVEL_SHORT_APDU = 0x00020000
    LEVEL_EXTENDED_APDU = 0x00040000
    USB_WAKE_UP = 0x00100000


#: Gemalto's vendor Escape libccid sends at open to every 08E6 reader. It accepts a failure.
GEMALTO_GET_FIRMWARE_FEATURES: Final = b"\x6a"

#: Gemalto's "get firmware version" Escape, used by libccid for the PC/SC part 10 property
#: sFirmwareID when an application (OpenSC) asks for the TLV properties of an 08E6 reader.
GEMALTO_GET_FIRMWARE_VERSION: Final = b"\x02"
