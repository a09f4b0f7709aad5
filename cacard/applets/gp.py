"""The GlobalPlatform card manager as a CAC card shows it: SELECT answers an Issuer Security
Domain FCI, GET DATA the CPLC and the card recognition data (GlobalPlatform Card Specification
2.1.1 §9.3, §H.2). Windows and some middleware read these; OpenSC does not.
"""

from __future__ import annotations

from typing import Final

from asn1crypto.core import ObjectIdentifier

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, success
from cardfloor.iso7816.instructions import INS_GET_DATA

from ..tlv import ber_tlv
from .applet import Applet, CardServices, Selection

GP_AID: Final = bytes.fromhex("A0000000030000")
#: The Issuer Security Domain AID its FCI names (the 8-byte form of the card manager AID).
ISD_AID: Final = bytes.fromhex("A000000003000000")
TAG_CPLC: Final = 0x9F7F
TAG_CARD_DATA: Final = 0x0066
TAG_CARD_RECOGNITION_DATA: Final = 0x73
#: Application production life cycle data and maximum command data length, as a CAC card's
#: ISD FCI carries them.
LIFE_CYCLE_DATA: Final = bytes.fromhex("129151810100")
MAX_COMMAND_DATA: Final = b"\xff"
CPLC_SIZE: Final = 42
#: Offset of the IC serial number (4 bytes) and IC batch identifier (2) in the CPLC.
CPLC_SERIAL_OFFSET: Final = 12

# GlobalPlatform's OIDs (1.2.840.114283 = globalPlatform).
_GP_CARD_RECOGNITION: Final = "1.2.840.114283.1"
_GP_VERSION_2_1_1: Final = "1.2.840.114283.2.2.1.1"
_GP_CARD_IDENTIFICATION: Final = "1.2.840.114283.3"
_GP_SCP02_I15: Final = "1.2.840.114283.4.2.21"


def _oid(dotted: str) -> bytes:
    encoded: bytes = ObjectIdentifier(dotted).dump()
    return encoded


def card_recognition_data() -> bytes:
    """Tag 66: a GlobalPlatform 2.1.1 card with SCP02 (51 bytes)."""
    body = (
        _oid(_GP_CARD_RECOGNITION)
        + ber_tlv(0x60, _oid(_GP_VERSION_2_1_1))
        + ber_tlv(0x63, _oid(_GP_CARD_IDENTIFICATION))
        + ber_tlv(0x64, _oid(_GP_SCP02_I15))
    )
    return ber_tlv(TAG_CARD_DATA, ber_tlv(TAG_CARD_RECOGNITION_DATA, body))


def cplc(card_id: bytes) -> bytes:
    """Tag 9F7F: the CPLC (45 bytes), zero but for the IC serial number and batch identifier,
    which are the last six bytes of the card id, so they differ from card to card."""
    data = bytearray(CPLC_SIZE)
    data[CPLC_SERIAL_OFFSET : CPLC_SERIAL_OFFSET + 6] = card_id[-6:]
    return ber_tlv(TAG_CPLC, bytes(data))


class GPApplet(Applet):
    def __init__(self, card_id: bytes) -> None:
        super().__init__(GP_AID, "GlobalPlatform")
        self._data = {TAG_CPLC: cplc(card_id), TAG_CARD_DATA: card_recognition_data()}

    def fci(self) -> bytes:
        proprietary = ber_tlv(0x9F6E, LIFE_CYCLE_DATA) + ber_tlv(0x9F65, MAX_COMMAND_DATA)
        return ber_tlv(0x6F, ber_tlv(0x84, ISD_AID) + ber_tlv(0xA5, proprietary))

    def process(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        if command.ins != INS_GET_DATA:
            return None
        data = self._data.get(command.p1 << 8 | command.p2)
        if data is None:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        return success(data)
