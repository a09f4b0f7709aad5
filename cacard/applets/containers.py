"""Generic container applets (GSC-IS 2.1 §5.3.3.3): the data objects of a CAC card (Person
Instance, Personnel...) and the applets a real CAC carries with nothing in them.

A data applet holds one object whose id is the last two bytes of its AID. Its content is
SimpleTLV (what OpenSC's CAC driver reassembles from the two buffers); it is empty unless the card
source provides one.
"""

from __future__ import annotations

import enum
from typing import Final

from ..tlv import TLV, decode
from .applet import RID_DOD, RID_GSC_IS
from .cac import CACApplet, CardObject

GENERIC_APPLICATION: Final = 0x02


class DataObjectId(enum.Enum):
    """The data objects of libcacard's card, with OpenSC's labels where it has one."""

    PERSON_INSTANCE = b"\x02\x00"
    PERSONNEL = b"\x02\x01"
    PKI_CREDENTIAL = b"\x02\xfd"
    PKI_CERTIFICATE = b"\x02\xfe"
    GENERIC_02FB = b"\x02\xfb"
    GENERIC_1201 = b"\x12\x01"
    GENERIC_1202 = b"\x12\x02"

    @property
    def label(self) -> str:
        return _LABELS.get(self, f"Generic {self.value.hex().upper()}")


_LABELS: Final = {
    DataObjectId.PERSON_INSTANCE: "Person Instance",
    DataObjectId.PERSONNEL: "Personnel",
    DataObjectId.PKI_CREDENTIAL: "PKI Credential",
    DataObjectId.PKI_CERTIFICATE: "PKI Certificate",
}

#: Applets that exist but list no objects (``A0 00 00 00 79 02 F0..F2``).
EMPTY_APPLETS: Final = (b"\x02\xf0", b"\x02\xf1", b"\x02\xf2")

#: The DoD Access Control File applet and its four (empty) objects.
ACCESS_CONTROL_AID: Final = RID_DOD + b"\x30\x00"
ACCESS_CONTROL_OBJECTS: Final = (b"\x30\x00", b"\x60\x10", b"\x60\x30", b"\x90\x00")


def data_applet(object_id: DataObjectId, content: bytes = b"") -> CACApplet:
    """The applet of data object ``object_id`` holding ``content`` (SimpleTLV bytes).

    Raises :class:`cacard.tlv.TLVError` when ``content`` is not SimpleTLV.
    """
    items: list[TLV] = decode(content)
    obj = CardObject.from_items(object_id.value, items)
    return CACApplet(RID_GSC_IS + object_id.value, object_id.label, [obj])


def empty_applet(suffix: bytes) -> CACApplet:
    return CACApplet(RID_GSC_IS + suffix, f"Empty {suffix.hex().upper()}")


def access_control_applet() -> CACApplet:
    objects = [CardObject.from_items(oid, ()) for oid in ACCESS_CONTROL_OBJECTS]
    return CACApplet(ACCESS_CONTROL_AID, "Access Control File", objects)
