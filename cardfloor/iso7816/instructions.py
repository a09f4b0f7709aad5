"""The interindustry instructions (INS) the project reads or answers, ISO/IEC 7816-4 §5.4.2 and
§11, each named as the standard names it, and the sets that decide what a PIN may be in.

Card-specific instructions (GSC-IS's READ BUFFER, GET PROPERTIES, ...) stay with the applet that
answers them (:mod:`cacard.applets`). Module-level integers, not an enum: the card and the guard
compare them once per APDU.
"""

from __future__ import annotations

from typing import Final

INS_VERIFY: Final = 0x20
INS_VERIFY_ODD: Final = 0x21
INS_CHANGE_REFERENCE_DATA: Final = 0x24
INS_CHANGE_REFERENCE_DATA_ODD: Final = 0x25
INS_RESET_RETRY_COUNTER: Final = 0x2C
INS_RESET_RETRY_COUNTER_ODD: Final = 0x2D
INS_MANAGE_CHANNEL: Final = 0x70
INS_GET_CHALLENGE: Final = 0x84
INS_SELECT: Final = 0xA4
INS_GET_RESPONSE: Final = 0xC0
#: ENVELOPE: the data is (a part of) a command APDU; odd: the same wrapped in BER-TLV.
INS_ENVELOPE: Final = 0xC2
INS_ENVELOPE_ODD: Final = 0xC3
INS_GET_DATA: Final = 0xCA
#: GET DATA / PUT DATA with BER-TLV data (the PIV card edge's form).
INS_GET_DATA_ODD: Final = 0xCB
INS_PUT_DATA_ODD: Final = 0xDB
INS_GENERAL_AUTHENTICATE: Final = 0x87
INS_GENERATE_ASYMMETRIC_KEY_PAIR: Final = 0x47

#: VERIFY P1 of ISO/IEC 7816-4:2013: reset the verification status of the reference.
P1_RESET_STATUS: Final = 0xFF

#: Every instruction that may compare a PIN or PUK with the card's reference data.
PIN_INSTRUCTIONS: Final = frozenset(
    {
        INS_VERIFY,
        INS_VERIFY_ODD,
        INS_CHANGE_REFERENCE_DATA,
        INS_CHANGE_REFERENCE_DATA_ODD,
        INS_RESET_RETRY_COUNTER,
        INS_RESET_RETRY_COUNTER_ODD,
    }
)
#: ENVELOPE, even and odd: its data may be (a part of) any command, a PIN command too.
ENVELOPE_INSTRUCTIONS: Final = frozenset({INS_ENVELOPE, INS_ENVELOPE_ODD})
#: Commands whose data a log must never show.
SECRET_INSTRUCTIONS: Final = PIN_INSTRUCTIONS | ENVELOPE_INSTRUCTIONS
