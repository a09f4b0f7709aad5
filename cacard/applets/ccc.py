"""The Card Capabilities Container (GSC-IS 2.1 §6, Appendix F): the card's table of contents.

OpenSC finds a CAC card by selecting this applet and learns everything from its one object: the
CUID (whose card id becomes the token serial) and one CardURL per applet object, type 04 for each
PKI applet and 01 for each data object.

The CUID is unique per card here. libcacard gives every card the same one, so OpenSC's file
cache mixes up cards (its documentation tells users to turn caching off).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from ..tlv import TLV
from .applet import RID_DOD, RID_GSC_IS
from .cac import CACApplet, CardObject
from .containers import ACCESS_CONTROL_OBJECTS, DataObjectId
from .pki import PKI_APPLICATION

CCC_AID: Final = RID_DOD + b"\xdb\x00"
CCC_OBJECT: Final = b"\xdb\x00"
#: Bytes of the card identifier inside the CUID.
CARD_ID_SIZE: Final = 14
#: CUID header: GSC-IS RID, manufacturer id, card type (what libcacard's cards carry).
CUID_MANUFACTURER: Final = 0x03
CUID_CARD_TYPE: Final = 0x02
CC_VERSION: Final = 0x21
GRAMMAR_VERSION: Final = 0x21
PKCS15: Final = 0x00
DATA_MODEL: Final = 0x10
#: Access control: the ACA's AID, length-prefixed, padded to 17 bytes.
ACCESS_CONTROL: Final = bytes((7,)) + RID_GSC_IS + b"\x03\x00" + bytes(9)
#: A CardURL is 16 bytes here: RID, type, object id, application id and 6 bytes of access
#: profile and key information that this card does not use.
CARD_URL_PADDING: Final = bytes(6)


class CCCTag(enum.IntEnum):
    CUID = 0xF0
    CC_VERSION = 0xF1
    GRAMMAR_VERSION = 0xF2
    CARD_URL = 0xF3
    PKCS15 = 0xF4
    DATA_MODEL = 0xF5
    ACCESS_CONTROL = 0xF6
    CARD_APDUS = 0xF7
    REDIRECTION = 0xFA
    CAPABILITY_TUPLES = 0xFB
    STATUS_TUPLES = 0xFC
    NEXT_CCC = 0xFD
    ERROR_CODES = 0xFE


class ApplicationType(enum.IntEnum):
    """``cardApplicationType`` of a CardURL."""

    GENERIC = 0x01
    SKI = 0x02
    PKI = 0x04


@dataclass(frozen=True, slots=True)
class CardURL:
    """Where one object lives: applet ``rid + application_id``, object ``object_id``."""

    rid: bytes
    application_type: ApplicationType
    object_id: bytes
    application_id: bytes

    def encode(self) -> bytes:
        return (
            self.rid
            + bytes((self.application_type,))
            + self.object_id
            + self.application_id
            + CARD_URL_PADDING
        )


def _generic(rid: bytes, object_id: bytes, application_id: bytes | None = None) -> CardURL:
    return CardURL(rid, ApplicationType.GENERIC, object_id, application_id or object_id)


#: The CardURLs every card lists before its PKI ones, in libcacard's order.
FIXED_CARD_URLS: Final = (
    _generic(RID_GSC_IS, DataObjectId.GENERIC_02FB.value),
    _generic(RID_GSC_IS, DataObjectId.PKI_CERTIFICATE.value),
    _generic(RID_GSC_IS, DataObjectId.PKI_CREDENTIAL.value),
    _generic(RID_GSC_IS, DataObjectId.PERSON_INSTANCE.value),
    _generic(RID_GSC_IS, DataObjectId.PERSONNEL.value),
    *(_generic(RID_DOD, oid, ACCESS_CONTROL_OBJECTS[0]) for oid in ACCESS_CONTROL_OBJECTS),
    _generic(RID_GSC_IS, DataObjectId.GENERIC_1201.value),
    _generic(RID_GSC_IS, DataObjectId.GENERIC_1202.value),
)


def pki_card_url(index: int) -> CardURL:
    oid = bytes((PKI_APPLICATION, index))
    return CardURL(RID_GSC_IS, ApplicationType.PKI, oid, oid)


def cuid(card_id: bytes) -> bytes:
    """The 21-byte CUID: GSC-IS RID, manufacturer, card type and the 14-byte card id."""
    if len(card_id) != CARD_ID_SIZE:
        raise ValueError(f"a card id is {CARD_ID_SIZE} bytes, got {len(card_id)}")
    return RID_GSC_IS + bytes((CUID_MANUFACTURER, CUID_CARD_TYPE)) + card_id


def ccc_applet(card_id: bytes, pki_count: int) -> CACApplet:
    """The CCC of a card with ``pki_count`` PKI applets.

    The empty trailing tags come last: OpenSC stops at the end of the V-buffer and never reaches
    them, which is why nothing may follow them.
    """
    urls = [*FIXED_CARD_URLS, *(pki_card_url(i) for i in range(pki_count))]
    items = [
        TLV(CCCTag.CUID, cuid(card_id)),
        TLV(CCCTag.CC_VERSION, bytes((CC_VERSION,))),
        TLV(CCCTag.GRAMMAR_VERSION, bytes((GRAMMAR_VERSION,))),
        *(TLV(CCCTag.CARD_URL, url.encode()) for url in urls),
        TLV(CCCTag.PKCS15, bytes((PKCS15,))),
        TLV(CCCTag.DATA_MODEL, bytes((DATA_MODEL,))),
        TLV(CCCTag.ACCESS_CONTROL, ACCESS_CONTROL),
        *(
            TLV(tag)
            for tag in (
                CCCTag.CARD_APDUS,
                CCCTag.REDIRECTION,
                CCCTag.CAPABILITY_TUPLES,
                CCCTag.STATUS_TUPLES,
                CCCTag.NEXT_CCC,
                CCCTag.ERROR_CODES,
            )
        ),
    ]
    return CACApplet(CCC_AID, "CCC", [CardObject.from_items(CCC_OBJECT, items)])
