"""PIV data objects, key references and algorithm identifiers (SP 800-73-4 Part 1 §3 and
Appendix A; SP 800-78-4 §6 Table 6-2) and the application property template SELECT answers
(SP 800-73-4 Part 2 §3.1.1).

Each object's ``to_bytes()`` is its GET DATA content: the value that the card wraps in tag ``53``
(:func:`get_data_response` does the wrapping). The Discovery Object is the exception: it is a
``7E`` template of its own, answered as is.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Final

from ..tlv import ber_tlv
from .ber import PIVFormatError, decode, decode_fields, decode_one, encode, require

#: Registered application provider id of NIST PIV.
PIV_RID: Final = bytes.fromhex("A000000308")
#: Proprietary application identifier extension: PIV application, version 01 00.
PIV_PIX: Final = bytes.fromhex("00001000 0100")
PIV_AID: Final = PIV_RID + PIV_PIX

#: The tag around every GET DATA answer and PUT DATA content (SP 800-73-4 Part 2 §3.1.2).
DATA_TAG: Final = 0x53
#: The tag list of GET DATA's command data.
TAG_LIST: Final = 0x5C
#: Error detection code: every container ends with it, empty (SP 800-73-4 Part 1 Appendix A).
ERROR_DETECTION_CODE: Final = 0xFE


class ObjectTag(enum.IntEnum):
    """BER-TLV tags of the PIV data objects (SP 800-73-4 Part 1 Table 3)."""

    CARD_CAPABILITY_CONTAINER = 0x5FC107
    CHUID = 0x5FC102
    PIV_AUTHENTICATION_CERTIFICATE = 0x5FC105  # key 9A
    FINGERPRINTS = 0x5FC103
    SECURITY_OBJECT = 0x5FC106
    FACIAL_IMAGE = 0x5FC108
    PRINTED_INFORMATION = 0x5FC109
    DIGITAL_SIGNATURE_CERTIFICATE = 0x5FC10A  # key 9C
    KEY_MANAGEMENT_CERTIFICATE = 0x5FC10B  # key 9D
    CARD_AUTHENTICATION_CERTIFICATE = 0x5FC101  # key 9E
    KEY_HISTORY = 0x5FC10C
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_1 = 0x5FC10D
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_2 = 0x5FC10E
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_3 = 0x5FC10F
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_4 = 0x5FC110
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_5 = 0x5FC111
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_6 = 0x5FC112
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_7 = 0x5FC113
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_8 = 0x5FC114
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_9 = 0x5FC115
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_10 = 0x5FC116
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_11 = 0x5FC117
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_12 = 0x5FC118
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_13 = 0x5FC119
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_14 = 0x5FC11A
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_15 = 0x5FC11B
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_16 = 0x5FC11C
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_17 = 0x5FC11D
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_18 = 0x5FC11E
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_19 = 0x5FC11F
    RETIRED_KEY_MANAGEMENT_CERTIFICATE_20 = 0x5FC120
    DISCOVERY = 0x7E

    @property
    def tag_bytes(self) -> bytes:
        """The tag as GET DATA's ``5C`` list carries it."""
        return self.value.to_bytes(1 if self.value <= 0xFF else 3, "big")

    @classmethod
    def from_tag_list(cls, data: bytes) -> ObjectTag:
        """The object a GET DATA or PUT DATA command names: ``5C len tag``."""
        raw = decode_one(data, TAG_LIST)
        try:
            return cls(int.from_bytes(raw, "big"))
        except ValueError:
            raise PIVFormatError("not a PIV object tag", field="5C", value=raw) from None


class KeyReference(enum.IntEnum):
    """Key references of GENERAL AUTHENTICATE's P2 (SP 800-78-4 Table 6-1, SP 800-73-4 Part 1
    Table 4b)."""

    PIV_AUTHENTICATION = 0x9A
    CARD_MANAGEMENT = 0x9B  # PIV Card Application Administration Key
    DIGITAL_SIGNATURE = 0x9C
    KEY_MANAGEMENT = 0x9D
    CARD_AUTHENTICATION = 0x9E
    RETIRED_KEY_MANAGEMENT_1 = 0x82
    RETIRED_KEY_MANAGEMENT_2 = 0x83
    RETIRED_KEY_MANAGEMENT_3 = 0x84
    RETIRED_KEY_MANAGEMENT_4 = 0x85
    RETIRED_KEY_MANAGEMENT_5 = 0x86
    RETIRED_KEY_MANAGEMENT_6 = 0x87
    RETIRED_KEY_MANAGEMENT_7 = 0x88
    RETIRED_KEY_MANAGEMENT_8 = 0x89
    RETIRED_KEY_MANAGEMENT_9 = 0x8A
    RETIRED_KEY_MANAGEMENT_10 = 0x8B
    RETIRED_KEY_MANAGEMENT_11 = 0x8C
    RETIRED_KEY_MANAGEMENT_12 = 0x8D
    RETIRED_KEY_MANAGEMENT_13 = 0x8E
    RETIRED_KEY_MANAGEMENT_14 = 0x8F
    RETIRED_KEY_MANAGEMENT_15 = 0x90
    RETIRED_KEY_MANAGEMENT_16 = 0x91
    RETIRED_KEY_MANAGEMENT_17 = 0x92
    RETIRED_KEY_MANAGEMENT_18 = 0x93
    RETIRED_KEY_MANAGEMENT_19 = 0x94
    RETIRED_KEY_MANAGEMENT_20 = 0x95

    @property
    def certificate_object(self) -> ObjectTag | None:
        """The object holding this key's certificate; ``None`` for the management key."""
        if self is KeyReference.CARD_MANAGEMENT:
            return None
        if self < KeyReference.PIV_AUTHENTICATION:
            # Retired keys 82..95 map in order onto objects 5FC10D..5FC120.
            return ObjectTag(ObjectTag.RETIRED_KEY_MANAGEMENT_CERTIFICATE_1 + self - 0x82)
        return _CURRENT_CERTIFICATES[self]


_CURRENT_CERTIFICATES: Final = {
    KeyReference.PIV_AUTHENTICATION: ObjectTag.PIV_AUTHENTICATION_CERTIFICATE,
    KeyReference.DIGITAL_SIGNATURE: ObjectTag.DIGITAL_SIGNATURE_CERTIFICATE,
    KeyReference.KEY_MANAGEMENT: ObjectTag.KEY_MANAGEMENT_CERTIFICATE,
    KeyReference.CARD_AUTHENTICATION: ObjectTag.CARD_AUTHENTICATION_CERTIFICATE,
}


class PinReference(enum.IntEnum):
    """Key references of VERIFY, CHANGE REFERENCE DATA and RESET RETRY COUNTER (SP 800-73-4
    Part 1 Table 4b)."""

    GLOBAL_PIN = 0x00
    APPLICATION_PIN = 0x80
    PUK = 0x81


class Algorithm(enum.IntEnum):
    """Cryptographic algorithm identifiers (SP 800-78-4 Table 6-2, GENERAL AUTHENTICATE's P1)."""

    #: '00' and '03' both name 3-key Triple DES in ECB mode; SP 800-78-5 deprecates both.
    TDES_LEGACY = 0x00
    TDES = 0x03
    RSA_1024 = 0x06
    RSA_2048 = 0x07
    AES_128 = 0x08
    AES_192 = 0x0A
    AES_256 = 0x0C
    ECC_P256 = 0x11
    ECC_P384 = 0x14
    # Not in SP 800-78-4 (SP 800-78-5 adds them). The values hosts send: OpenSC's PIV driver
    # names a 384-byte RSA block 05 (0.23 on) and a 512-byte one 16 (later releases) (OpenSC,
    # card-piv.c, piv_validate_general_authentication); yubico-piv-tool after 2.2.0 has the
    # same two (yubico-piv-tool, lib/ykpiv.h, YKPIV_ALGO_RSA3072/YKPIV_ALGO_RSA4096); 2.2.0
    # knows neither.
    RSA_3072 = 0x05
    RSA_4096 = 0x16


def get_data_response(tag: ObjectTag, content: bytes) -> bytes:
    """What GET DATA answers for ``tag`` holding ``content``: ``53 len content``, except for the
    Discovery Object, whose ``7E`` template is the answer itself."""
    if tag is ObjectTag.DISCOVERY:
        return content
    return ber_tlv(DATA_TAG, content)


FASC_N_SIZE: Final = 25
GUID_SIZE: Final = 16
#: CCC card identifier: GSC-IS RID (5), manufacturer id (1), card type (1), card id (14).
CARD_IDENTIFIER_SIZE: Final = 21
CAPABILITY_CONTAINER_VERSION: Final = 0x21
CAPABILITY_GRAMMAR_VERSION: Final = 0x21
#: Registered data model number of the CCC: the PIV data model.
CCC_DATA_MODEL: Final = 0x10
#: Retired key management keys 82..95.
RETIRED_KEYS: Final = 20
#: Printed Information's text fields: attribute, tag, maximum length (SP 800-73-4 Part 1
#: Appendix A).
_PRINTED_TEXT_FIELDS: Final = (
    ("name", 0x01, 125),
    ("employee_affiliation", 0x02, 20),
    ("agency_card_serial_number", 0x05, 20),
    ("issuer_identification", 0x06, 15),
    ("organization_affiliation_1", 0x07, 20),
    ("organization_affiliation_2", 0x08, 20),
)


def _with_edc(items: list[tuple[int, bytes]]) -> bytes:
    return encode([*items, (ERROR_DETECTION_CODE, b"")])


def _fixed(value: bytes, size: int, field: str) -> bytes:
    if len(value) != size:
        raise PIVFormatError(f"{field} must be {size} bytes", field=field, value=value)
    return value


def _at_most(value: bytes, size: int, field: str) -> bytes:
    if len(value) > size:
        raise PIVFormatError(f"{field} holds at most {size} bytes", field=field, value=value)
    return value


@dataclass(frozen=True, slots=True)
class CHUID:
    """Card Holder Unique Identifier (SP 800-73-4 Part 1 Appendix A).

    ``issuer_signature`` is the CMS signature over the CHUID (tag ``3E``). A real PIV card must
    carry one; an emulated test card has no issuer to sign it, so it may be empty, which relying
    parties that check CHUID signatures will reject.
    """

    fasc_n: bytes
    guid: bytes
    expiration: datetime.date
    issuer_signature: bytes = b""
    #: Cardholder UUID (tag ``36``), optional.
    cardholder_uuid: bytes | None = None

    def __post_init__(self) -> None:
        _fixed(self.fasc_n, FASC_N_SIZE, "FASC-N")
        _fixed(self.guid, GUID_SIZE, "GUID")
        if self.cardholder_uuid is not None:
            _fixed(self.cardholder_uuid, GUID_SIZE, "cardholder UUID")

    def to_bytes(self) -> bytes:
        items = [
            (0x30, self.fasc_n),
            (0x34, self.guid),
            (0x35, self.expiration.strftime("%Y%m%d").encode("ascii")),
        ]
        if self.cardholder_uuid is not None:
            items.append((0x36, self.cardholder_uuid))
        items.append((0x3E, self.issuer_signature))
        return _with_edc(items)

    @classmethod
    def from_bytes(cls, data: bytes) -> CHUID:
        fields = decode_fields(data, where="CHUID")
        raw_date = require(fields, 0x35, where="CHUID")
        try:
            expiration = datetime.datetime.strptime(raw_date.decode("ascii"), "%Y%m%d").date()
        except (UnicodeDecodeError, ValueError):
            raise PIVFormatError(
                "CHUID expiration is not YYYYMMDD", field="35", value=raw_date
            ) from None
        return cls(
            fasc_n=require(fields, 0x30, where="CHUID"),
            guid=require(fields, 0x34, where="CHUID"),
            expiration=expiration,
            issuer_signature=fields.get(0x3E, b""),
            cardholder_uuid=fields.get(0x36),
        )


@dataclass(frozen=True, slots=True)
class CardCapabilityContainer:
    """Card Capability Container (SP 800-73-4 Part 1 Appendix A). PIV keeps it for GSC-IS
    clients; only the card identifier varies between cards."""

    #: :data:`CARD_IDENTIFIER_SIZE` bytes.
    card_identifier: bytes

    def __post_init__(self) -> None:
        _fixed(self.card_identifier, CARD_IDENTIFIER_SIZE, "card identifier")

    def to_bytes(self) -> bytes:
        return _with_edc(
            [
                (0xF0, self.card_identifier),
                (0xF1, bytes((CAPABILITY_CONTAINER_VERSION,))),
                (0xF2, bytes((CAPABILITY_GRAMMAR_VERSION,))),
                (0xF3, b""),  # applications CardURL
                (0xF4, b"\x00"),  # PKCS#15: none
                (0xF5, bytes((CCC_DATA_MODEL,))),
                (0xF6, b""),  # access control rule table
                (0xF7, b""),  # card APDUs
                (0xFA, b""),  # redirection tag
                (0xFB, b""),  # capability tuples
                (0xFC, b""),  # status tuples
                (0xFD, b""),  # next CCC
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> CardCapabilityContainer:
        fields = decode_fields(data, where="CCC")
        return cls(require(fields, 0xF0, where="CCC"))


class PinUsagePolicy(enum.IntFlag):
    """First byte of the Discovery Object's PIN usage policy (SP 800-73-4 Part 1 Appendix A)."""

    APPLICATION_PIN = 0x40
    GLOBAL_PIN = 0x20
    ON_CARD_COMPARISON = 0x10
    VIRTUAL_CONTACT_INTERFACE = 0x08


@dataclass(frozen=True, slots=True)
class DiscoveryObject:
    """Discovery Object (SP 800-73-4 Part 1 Appendix A): which PIN the card wants."""

    pin_usage: PinUsagePolicy = PinUsagePolicy.APPLICATION_PIN
    #: Second byte: which PIN is primary when both exist (``10`` application, ``20`` global);
    #: ``00`` when the application PIN is the only one.
    primary_pin: int = 0x00

    def to_bytes(self) -> bytes:
        """The whole ``7E`` template: GET DATA answers it without a ``53`` wrapper."""
        policy = bytes((int(self.pin_usage), self.primary_pin))
        return ber_tlv(ObjectTag.DISCOVERY, encode([(0x4F, PIV_AID), (0x5F2F, policy)]))

    @classmethod
    def from_bytes(cls, data: bytes) -> DiscoveryObject:
        fields = decode_fields(decode_one(data, ObjectTag.DISCOVERY), where="Discovery Object")
        aid = require(fields, 0x4F, where="Discovery Object")
        if aid != PIV_AID:
            raise PIVFormatError(
                "Discovery Object names another application", field="4F", value=aid
            )
        policy = _fixed(require(fields, 0x5F2F, where="Discovery Object"), 2, "5F2F")
        return cls(PinUsagePolicy(policy[0]), policy[1])


@dataclass(frozen=True, slots=True)
class KeyHistory:
    """Key History Object (SP 800-73-4 Part 1 Appendix A): how many retired key
    management keys the card holds, with and without a certificate on the card."""

    on_card_certificates: int = 0
    off_card_certificates: int = 0
    #: Where off-card certificates live (tag ``F3``); present exactly when some are.
    off_card_url: bytes | None = None

    def __post_init__(self) -> None:
        total = self.on_card_certificates + self.off_card_certificates
        if min(self.on_card_certificates, self.off_card_certificates) < 0 or total > RETIRED_KEYS:
            raise PIVFormatError(
                "key history counts exceed 20 retired keys", field="C1+C2", value=total
            )
        if (self.off_card_url is not None) != (self.off_card_certificates > 0):
            raise PIVFormatError(
                "off-card URL goes with off-card certificates",
                field="C2",
                value=self.off_card_certificates,
            )

    def to_bytes(self) -> bytes:
        items = [
            (0xC1, bytes((self.on_card_certificates,))),
            (0xC2, bytes((self.off_card_certificates,))),
        ]
        if self.off_card_url is not None:
            items.append((0xF3, self.off_card_url))
        return _with_edc(items)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyHistory:
        fields = decode_fields(data, where="Key History")
        on = _fixed(require(fields, 0xC1, where="Key History"), 1, "C1")
        off = _fixed(require(fields, 0xC2, where="Key History"), 1, "C2")
        return cls(on[0], off[0], fields.get(0xF3))


#: Printed Information's expiration date format (SP 800-73-4 Part 1 Appendix A): ``2030DEC31``.
_MONTHS: Final = (
    "JAN",
    "FEB",
    "MAR",
    "APR",
    "MAY",
    "JUN",
    "JUL",
    "AUG",
    "SEP",
    "OCT",
    "NOV",
    "DEC",
)


@dataclass(frozen=True, slots=True)
class PrintedInformation:
    """Printed Information (SP 800-73-4 Part 1 Appendix A): what is printed on the card,
    as ASCII text fields with maximum lengths."""

    name: str
    employee_affiliation: str
    expiration: datetime.date
    agency_card_serial_number: str
    issuer_identification: str
    organization_affiliation_1: str | None = None
    organization_affiliation_2: str | None = None

    def __post_init__(self) -> None:
        for attribute, tag, size in _PRINTED_TEXT_FIELDS:
            text = getattr(self, attribute)
            if text is None:
                continue
            if not text.isascii():
                raise PIVFormatError("printed text must be ASCII", field=f"{tag:02X}", value=text)
            _at_most(text.encode("ascii"), size, f"{tag:02X}")

    def to_bytes(self) -> bytes:
        day = self.expiration
        expiration = f"{day.year:04d}{_MONTHS[day.month - 1]}{day.day:02d}".encode("ascii")
        items: list[tuple[int, bytes]] = []
        for attribute, tag, _ in _PRINTED_TEXT_FIELDS:
            text = getattr(self, attribute)
            if text is not None:
                items.append((tag, text.encode("ascii")))
        items.insert(2, (0x04, expiration))  # the table's order: 01, 02, 04, 05, ...
        return _with_edc(items)

    @classmethod
    def from_bytes(cls, data: bytes) -> PrintedInformation:
        fields = decode_fields(data, where="Printed Information")
        raw_date = require(fields, 0x04, where="Printed Information")
        try:
            shown = raw_date.decode("ascii")
            if len(shown) != 9 or not (shown[:4] + shown[7:]).isdigit():
                raise ValueError(shown)
            month = _MONTHS.index(shown[4:7]) + 1
            expiration = datetime.date(int(shown[:4]), month, int(shown[7:]))
        except (UnicodeDecodeError, ValueError):
            raise PIVFormatError(
                "expiration is not YYYYMMMDD", field="04", value=raw_date
            ) from None

        def text(tag: int) -> str:
            return require(fields, tag, where="Printed Information").decode("ascii", "replace")

        def optional(tag: int) -> str | None:
            return text(tag) if tag in fields else None

        return cls(
            name=text(0x01),
            employee_affiliation=text(0x02),
            expiration=expiration,
            agency_card_serial_number=text(0x05),
            issuer_identification=text(0x06),
            organization_affiliation_1=optional(0x07),
            organization_affiliation_2=optional(0x08),
        )


class CertInfo(enum.IntEnum):
    """CertInfo byte of a certificate object (SP 800-73-4 Part 1 Appendix A): bit 0 says the
    certificate is gzip-compressed."""

    UNCOMPRESSED = 0x00
    GZIP = 0x01


@dataclass(frozen=True, slots=True)
class CertificateObject:
    """An X.509 certificate container (SP 800-73-4 Part 1 Appendix A):
    ``70`` certificate, ``71`` CertInfo, ``FE`` error detection code."""

    #: The certificate's DER, or its gzip stream when ``cert_info`` is GZIP.
    certificate: bytes
    cert_info: CertInfo = CertInfo.UNCOMPRESSED

    def to_bytes(self) -> bytes:
        return _with_edc([(0x70, self.certificate), (0x71, bytes((self.cert_info,)))])

    @classmethod
    def from_bytes(cls, data: bytes) -> CertificateObject:
        fields = decode_fields(data, where="certificate object")
        info = _fixed(require(fields, 0x71, where="certificate object"), 1, "71")
        try:
            cert_info = CertInfo(info[0])
        except ValueError:
            raise PIVFormatError("unknown CertInfo", field="71", value=info) from None
        return cls(require(fields, 0x70, where="certificate object"), cert_info)


#: Algorithms a card lists in its property template unless told otherwise.
DEFAULT_ALGORITHMS: Final = (
    Algorithm.TDES,
    Algorithm.AES_128,
    Algorithm.AES_192,
    Algorithm.AES_256,
    Algorithm.RSA_1024,
    Algorithm.RSA_2048,
    Algorithm.RSA_3072,
    Algorithm.RSA_4096,
    Algorithm.ECC_P256,
    Algorithm.ECC_P384,
)


@dataclass(frozen=True, slots=True)
class ApplicationPropertyTemplate:
    """What SELECT of the PIV AID answers (SP 800-73-4 Part 2 §3.1.1, Table 3):
    ``61 { 4F PIX, 79 { 4F RID }, 50 label, AC { 80 alg ... 06 00 } }``."""

    label: str | None = None
    algorithms: tuple[Algorithm, ...] = DEFAULT_ALGORITHMS

    def to_bytes(self) -> bytes:
        items = [(0x4F, PIV_PIX), (0x79, ber_tlv(0x4F, PIV_RID))]
        if self.label is not None:
            items.append((0x50, self.label.encode("ascii")))
        if self.algorithms:
            listed = [(0x80, bytes((algorithm,))) for algorithm in self.algorithms]
            # Table 3 closes the list with object identifier '06' whose value is '00'.
            items.append((0xAC, encode([*listed, (0x06, b"\x00")])))
        return ber_tlv(0x61, encode(items))

    @classmethod
    def from_bytes(cls, data: bytes) -> ApplicationPropertyTemplate:
        fields = decode_fields(decode_one(data, 0x61), where="property template")
        label = fields.get(0x50)
        algorithms: list[Algorithm] = []
        # decode, not decode_fields: the list repeats tag 80.
        for item in decode(fields.get(0xAC, b"")):
            if item.tag != 0x80:
                continue
            try:
                algorithms.append(Algorithm(int.from_bytes(item.value, "big")))
            except ValueError:
                continue  # an algorithm this emulator does not know says nothing against it
        return cls(None if label is None else label.decode("ascii", "replace"), tuple(algorithms))
