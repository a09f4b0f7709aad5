"""The Microsoft plug-and-play applet: GET DATA 7F68 answers the card identifier Windows uses
to find a smart-card minidriver for the card.

libcacard's applet also switches VERIFY's status query from 9000 to ``63 C3`` once this data
has been read, to please Windows. This card needs no such switch: its status query always
answers ``63Cx`` until the PIN is verified (see :mod:`cacard.pin`).
"""

from __future__ import annotations

import hashlib
from typing import Final

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, success
from cardfloor.iso7816.instructions import INS_GET_DATA

from ..tlv import ber_tlv
from .applet import Applet, CardServices, Selection

#: ``A0 00 00 03 97`` (Microsoft) + "CID_" + 01 00.
MSFT_AID: Final = bytes.fromhex("A0000003974349445F0100")
TAG_CARD_ID: Final = 0x7F68
CARD_ID_SIZE: Final = 16


def windows_card_id(card_id: bytes) -> bytes:
    """16 bytes unique to the card, derived from its CAC card id."""
    return hashlib.sha256(b"cacard msft card id" + card_id).digest()[:CARD_ID_SIZE]


def card_id_data(card_id: bytes) -> bytes:
    """``SEQUENCE { INTEGER 0, IA5String "MSFT", SEQUENCE { OCTET STRING (16) } }``: 31 bytes."""
    return ber_tlv(
        0x30,
        ber_tlv(0x02, b"\x00")
        + ber_tlv(0x16, b"MSFT")
        + ber_tlv(0x30, ber_tlv(0x04, windows_card_id(card_id))),
    )


class MSFTApplet(Applet):
    def __init__(self, card_id: bytes) -> None:
        super().__init__(MSFT_AID, "Microsoft PnP")
        self._card_id = card_id_data(card_id)

    def process(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        if command.ins != INS_GET_DATA:
            return None
        if command.p1 << 8 | command.p2 != TAG_CARD_ID:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        return success(self._card_id)
