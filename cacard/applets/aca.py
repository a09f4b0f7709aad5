"""The Access Control Applet (GSC-IS 2.1 §5.3.3.5): GET ACR publishes the card's access rules.

The tables are built from what the applets really enforce (:mod:`cacard.applets.acr`) and
encoded as GSC-IS 2.1 lays them out. libcacard's differ: its ACR, service and AMP entries copy
raw C structures (padding and integers where the AIDs belong), its AMP table is off by one, and
its ACR table lists external-authentication rules no applet uses. Only the SimpleTLV forms are
served: libcacard's "compact" forms (P1 with bit 0x40) are undocumented, and this card does not
guess at them (6A86). OpenSC reads the ACA only on cards without a CCC; this card has one.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Final

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, success

from ..tlv import TLV, encode
from .acr import ACR_TABLE, AMP_PIN, ObjectRules
from .applet import ACA_AID, RID_GSC_IS, CardServices, Selection
from .cac import CACApplet
from .ccc import CCC_AID
from .containers import ACCESS_CONTROL_AID, EMPTY_APPLETS, DataObjectId
from .pki import PKI_APPLICATION

INS_GET_ACR: Final = 0x4C
#: Service applet id of PKI applet i is this plus i.
PKI_APPLET_ID_BASE: Final = 0x61


class ACRTableP1(enum.IntEnum):
    """GET ACR P1: which table, and which part of it."""

    ACR = 0x00
    ACR_BY_ID = 0x01
    APPLET_OBJECT = 0x10
    APPLET_BY_AID = 0x11
    OBJECT_BY_ID = 0x12
    AMP = 0x20
    SERVICE = 0x21


class ACATag(enum.IntEnum):
    ACR_COUNT = 0xA1
    ACR_ENTRY = 0xA0
    APPLET_COUNT = 0x81
    APPLET_ACR = 0x80
    OBJECT_ACR = 0x82
    AMP_COUNT = 0x91
    AMP_ENTRY = 0x90
    AID = 0x92
    SERVICE_COUNT = 0x94
    SERVICE_ENTRY = 0x93


# Command data length each table request carries.
_DATA_LENGTH: Final = {
    ACRTableP1.ACR: 0,
    ACRTableP1.ACR_BY_ID: 1,
    ACRTableP1.APPLET_OBJECT: 0,
    ACRTableP1.APPLET_BY_AID: 7,
    ACRTableP1.OBJECT_BY_ID: 2,
    ACRTableP1.AMP: 0,
    ACRTableP1.SERVICE: 0,
}

# Service applet ids of the applets every card carries (those of a real CAC, per libcacard).
_STATIC_APPLET_IDS: Final = {
    ACCESS_CONTROL_AID: 0x40,
    CCC_AID: 0x4F,
    RID_GSC_IS + DataObjectId.GENERIC_02FB.value: 0x4B,
    RID_GSC_IS + DataObjectId.PERSON_INSTANCE.value: 0x41,
    RID_GSC_IS + DataObjectId.PERSONNEL.value: 0x42,
    RID_GSC_IS + DataObjectId.PKI_CERTIFICATE.value: 0x4E,
    RID_GSC_IS + DataObjectId.PKI_CREDENTIAL.value: 0x4D,
    RID_GSC_IS + EMPTY_APPLETS[2]: 0x50,
    RID_GSC_IS + EMPTY_APPLETS[0]: 0x51,
    RID_GSC_IS + EMPTY_APPLETS[1]: 0x52,
    RID_GSC_IS + DataObjectId.GENERIC_1201.value: 0x44,
    RID_GSC_IS + DataObjectId.GENERIC_1202.value: 0x45,
}


def service_applet_id(aid: bytes) -> int:
    """The one-byte id under which the ACA lists the applet at ``aid``."""
    if aid[:-1] == RID_GSC_IS + bytes((PKI_APPLICATION,)):
        return PKI_APPLET_ID_BASE + aid[-1]
    try:
        return _STATIC_APPLET_IDS[aid]
    except KeyError:
        raise ValueError(f"no service applet id for AID {aid.hex().upper()}") from None


def _with_aid(entry_id: int, aid: bytes) -> bytes:
    return bytes((entry_id,)) + TLV(ACATag.AID, aid).to_bytes()


class ACAApplet(CACApplet):
    """The ACA of a card whose CAC applets are ``services`` (every one but the ACA)."""

    applet_version = bytes.fromhex("02060202")
    update_buffer_status = StatusWord.INS_NOT_SUPPORTED

    def __init__(self, services: Sequence[CACApplet]) -> None:
        super().__init__(ACA_AID, "ACA")
        self.services = [(service_applet_id(applet.aid), applet) for applet in services]

    def properties(self, *, long: bool = False) -> list[TLV]:
        # The ACA describes no objects of its own: only its applet information.
        return super().properties()[:1]

    def read_buffer(self, command: CommandAPDU, selection: Selection) -> Response:
        return status(StatusWord.INS_NOT_SUPPORTED)

    def process_other(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        if command.ins != INS_GET_ACR:
            return super().process_other(command, selection, card)
        if command.p2 != 0x00 or command.p1 not in ACRTableP1._value2member_map_:
            return status(StatusWord.INCORRECT_P1_P2)
        table = ACRTableP1(command.p1)
        if len(command.data) != _DATA_LENGTH[table]:
            return status(StatusWord.DATA_INVALID)
        items = self._table(table, command.data)
        if isinstance(items, int):
            return status(items)
        return success(encode([self.properties()[0], *items]))

    def _table(self, table: ACRTableP1, key: bytes) -> list[TLV] | int:
        """The items of ``table`` (narrowed by ``key``), or the status word of a miss."""
        if table is ACRTableP1.ACR:
            entries = [TLV(ACATag.ACR_ENTRY, acr.encode()) for acr in ACR_TABLE]
            return [TLV(ACATag.ACR_COUNT, bytes((len(entries),))), *entries]
        if table is ACRTableP1.ACR_BY_ID:
            found = [
                TLV(ACATag.ACR_ENTRY, acr.encode()) for acr in ACR_TABLE if acr.acrid == key[0]
            ]
            return found or StatusWord.REFERENCED_DATA_NOT_FOUND
        if table is ACRTableP1.APPLET_OBJECT:
            entries = [self._applet_acr(i, applet) for i, applet in self.services]
            return [TLV(ACATag.APPLET_COUNT, bytes((len(entries),))), *entries]
        if table is ACRTableP1.APPLET_BY_AID:
            found = [self._applet_acr(i, a) for i, a in self.services if a.aid == key]
            return found[:1] or StatusWord.REFERENCED_DATA_NOT_FOUND
        if table is ACRTableP1.OBJECT_BY_ID:
            rules = [r for _, a in self.services for r in a.access_rules() if r.object_id == key]
            return (
                [TLV(ACATag.OBJECT_ACR, rules[0].encode())] if rules else StatusWord.INCORRECT_DATA
            )
        if table is ACRTableP1.AMP:
            return [
                TLV(ACATag.AMP_COUNT, b"\x01"),
                TLV(ACATag.AMP_ENTRY, _with_aid(AMP_PIN, ACA_AID)),
            ]
        entries = [TLV(ACATag.SERVICE_ENTRY, _with_aid(i, a.aid)) for i, a in self.services]
        return [TLV(ACATag.SERVICE_COUNT, bytes((len(entries),))), *entries]

    @staticmethod
    def _applet_acr(applet_id: int, applet: CACApplet) -> TLV:
        rules: list[ObjectRules] = applet.access_rules()
        body = bytes((applet_id, len(rules))) + b"".join(
            TLV(ACATag.OBJECT_ACR, object_rules.encode()).to_bytes() for object_rules in rules
        )
        return TLV(ACATag.APPLET_ACR, body)
