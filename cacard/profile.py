"""A card's contents, and the card made from them: which applets sit at which AIDs.

The CAC layout is libcacard's (``cac_card_init``): one PKI applet per credential, the ACA, the
CCC, the data and empty container applets of a real CAC, the Access Control File, and the
GlobalPlatform and Microsoft applets. A card with PIV (:class:`Applications`) adds the PIV
application over the same keys: credentials 1-4 are keys 9A, 9C, 9D and 9E.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from .applets.aca import ACAApplet
from .applets.applet import Applet
from .applets.cac import CACApplet
from .applets.ccc import CARD_ID_SIZE, ccc_applet, pki_card_url
from .applets.containers import (
    EMPTY_APPLETS,
    DataObjectId,
    access_control_applet,
    data_applet,
    empty_applet,
)
from .applets.gp import GPApplet
from .applets.msft import MSFTApplet
from .applets.pki import MAX_PKI_APPLETS, PKIApplet
from .atr import CAC_ATR, CAC_ATR_T1, PIV_ATR, atr_problem
from .card import Card, StateSink
from .keys import Credential, ECCardKey
from .pin import PinReference, PinState
from .piv.applet import ChangeSink, PIVApplet, PIVKeyError, SlotKey, key_algorithm
from .piv.ber import decode as decode_ber
from .piv.ber import encode as encode_ber
from .piv.objects import CardCapabilityContainer, KeyReference, ObjectTag
from .tlv import TLVError, decode

#: The order of data applets on the card (libcacard's).
DATA_APPLETS: Final = (
    DataObjectId.GENERIC_02FB,
    DataObjectId.PERSON_INSTANCE,
    DataObjectId.PERSONNEL,
    DataObjectId.PKI_CERTIFICATE,
    DataObjectId.PKI_CREDENTIAL,
    DataObjectId.GENERIC_1201,
    DataObjectId.GENERIC_1202,
)


class Applications(enum.Enum):
    """The card applications a card holds (``card.json``'s ``profile``)."""

    CAC = "cac"
    PIV = "piv"
    #: Both over the same keys, as on a real CAC, which carries a PIV application too.
    CAC_PIV = "cac+piv"

    @property
    def cac(self) -> bool:
        return self is not Applications.PIV

    @property
    def piv(self) -> bool:
        return self is not Applications.CAC

    @property
    def default_atr(self) -> bytes:
        """The ATR a card of these applications gets unless told otherwise: libcacard's for a
        CAC card; one offering T=1 too (which yubico-piv-tool needs) for a card with PIV, as
        the CAC ATR (with T=1) on ``cac+piv`` and :data:`~cacard.atr.PIV_ATR` on ``piv``."""
        if self is Applications.CAC:
            return CAC_ATR
        return CAC_ATR_T1 if self is Applications.CAC_PIV else PIV_ATR


#: The PIV key of each of the first four credentials: CAC's ID (PIV Authentication), signature
#: and encryption (key management) certificates, then Card Authentication (9E, usable without
#: the PIN by the PIV rules; on a ``cac+piv`` card the CAC applet of the same key still wants it).
PIV_KEYS: Final = (
    KeyReference.PIV_AUTHENTICATION,
    KeyReference.DIGITAL_SIGNATURE,
    KeyReference.KEY_MANAGEMENT,
    KeyReference.CARD_AUTHENTICATION,
)


class ProfileError(ValueError):
    """Card contents this card cannot hold; ``field`` names the part, ``value`` what it was."""

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        super().__init__(f"{reason}: {field}={value}")
        self.reason = reason
        self.field = field
        self.value = value


def card_id_from_certificate(certificate: x509.Certificate) -> bytes:
    """A card id that stays the same for the same first certificate (14 bytes of its SHA-256)."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()[:CARD_ID_SIZE]


def _check_credential(index: int, credential: Credential, applications: Applications) -> None:
    where = f"credentials[{index}]"
    cert_key = credential.certificate.public_key()
    if not applications.piv and not isinstance(cert_key, rsa.RSAPublicKey):
        raise ProfileError(
            "OpenSC's CAC driver handles RSA only (EC keys need a card with PIV)",
            field=f"{where}.certificate",
            value=type(cert_key).__name__,
        )
    if _spki(cert_key) != _spki(credential.key.public_key):
        raise ProfileError(
            "the key does not belong to the certificate",
            field=f"{where}.key",
            value=credential.certificate.subject.rfc4514_string(),
        )
    if applications.piv and index < len(PIV_KEYS):
        try:
            key_algorithm(credential.key)
        except PIVKeyError as error:
            raise ProfileError(
                "PIV holds RSA-1024 to 4096, P-256 and P-384 keys",
                field=f"{where}.key",
                value=f"{error.field}={error.value}",
            ) from None


@dataclass(frozen=True)
class CardProfile:
    """Everything about a card that does not change while it is used.

    ``data_objects`` maps a data object to its content (SimpleTLV bytes); the others are empty.
    """

    credentials: tuple[Credential, ...]
    card_id: bytes
    atr: bytes = CAC_ATR
    data_objects: Mapping[DataObjectId, bytes] = field(default_factory=dict)
    applications: Applications = Applications.CAC

    def __post_init__(self) -> None:
        if not 1 <= len(self.credentials) <= MAX_PKI_APPLETS:
            raise ProfileError(
                f"a CAC card holds 1 to {MAX_PKI_APPLETS} certificates",
                field="credentials",
                value=len(self.credentials),
            )
        if not self.applications.cac and len(self.credentials) > len(PIV_KEYS):
            # Only a CAC applet could serve the others.
            raise ProfileError(
                f"a PIV card holds 1 to {len(PIV_KEYS)} certificates (keys 9A, 9C, 9D, 9E)",
                field="credentials",
                value=len(self.credentials),
            )
        for index, credential in enumerate(self.credentials):
            _check_credential(index, credential, self.applications)
        if self.applications.cac and not any(
            not isinstance(credential.key, ECCardKey) for credential in self.credentials
        ):
            raise ProfileError(
                "a CAC application needs at least one RSA credential (EC keys only: --profile piv)",
                field="credentials",
                value="EC only",
            )
        if (problem := atr_problem(self.atr)) is not None:
            raise ProfileError(problem, field="atr", value=self.atr.hex().upper())
        if len(self.card_id) != CARD_ID_SIZE:
            raise ProfileError(
                f"a card id is {CARD_ID_SIZE} bytes", field="card_id", value=self.card_id.hex()
            )
        for object_id, content in self.data_objects.items():
            try:
                decode(content)
            except TLVError as error:
                raise ProfileError(
                    f"data object content is not SimpleTLV ({error.reason})",
                    field=f"data_objects[{object_id.value.hex().upper()}]",
                    value=len(content),
                ) from None


#: The PIV CCC's card identifier before the card id: the GSC-IS RID, then the manufacturer
#: (01) and card type (02) the PIV application puts there.
PIV_CCC_PREFIX: Final = bytes.fromhex("A000000079") + b"\x01\x02"
#: The CCC's applications CardURL tag.
_CARD_URL: Final = 0xF3


def piv_capability_container(card_id: bytes, applications: Applications) -> bytes:
    """The Card Capability Container of the PIV application on a card with ``card_id``: its
    card identifier ends with the card id, and on a card with CAC its applications CardURL
    (``F3``, empty on a ``piv`` card) points at the first PKI applet, as the first PKI
    CardURL of the CAC's CCC applet does.

    **Why.** That is how a dual CAC/PIV card says what it is, and OpenSC's PIV driver reads
    it so (OpenSC, ``card-piv.c``, ``piv_parse_ccc``: a 16-byte CardURL with the CAC RID and
    application type 04). It then takes the card for a dual CAC/PIV card
    (``piv_match_card_continued``), whose Discovery Object and CCC it no longer reads again
    and again: at the start of every PC/SC transaction, to learn whether PIV is still selected
    (``piv_card_reader_lock_obtained``), and twice more as each process opens the card: a
    guest login through OpenSC 0.23 takes 40-45 fewer round trips (issue #17). As with a real
    dual card, OpenSC then trusts PIV to stay selected between its transactions unless the
    card was reset (``CI_PIV_AID_LOSE_STATE``), and uses no random numbers from the card
    (``CI_NO_RANDOM``).
    """
    plain = CardCapabilityContainer(PIV_CCC_PREFIX + card_id).to_bytes()
    if not applications.cac:
        return plain
    url = pki_card_url(0).encode()
    return encode_ber(
        (item.tag, url if item.tag == _CARD_URL else item.value) for item in decode_ber(plain)
    )


def cac_applets(profile: CardProfile) -> list[Applet]:
    """The applets of a CAC card with ``profile``'s contents.

    PKI applets hold the RSA credentials, numbered in card order; an EC credential (on a
    ``cac+piv`` card) is in the PIV application only, as OpenSC's CAC driver is RSA-only.
    """
    rsa_credentials = [c for c in profile.credentials if not isinstance(c.key, ECCardKey)]
    pki: list[CACApplet] = [PKIApplet(i, c) for i, c in enumerate(rsa_credentials)]
    others: list[CACApplet] = [
        ccc_applet(profile.card_id, len(pki)),
        *(data_applet(oid, profile.data_objects.get(oid, b"")) for oid in DATA_APPLETS),
        *(empty_applet(suffix) for suffix in EMPTY_APPLETS),
        access_control_applet(),
    ]
    services = [*pki, *others]
    return [
        *services,
        ACAApplet(services),
        GPApplet(profile.card_id),
        MSFTApplet(profile.card_id),
    ]


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def blocked_puk(random: Callable[[int], bytes] = os.urandom) -> PinState:
    """A PUK no value opens: the card keeps no PUK, and a known one would let any host refill
    the card PIN's retry counter (``cacard unblock`` is the administrator's way)."""
    reference = PinReference(random(16), random(32), iterations=1)
    return PinState(reference, tries_remaining=0)


def piv_applet(
    profile: CardProfile,
    puk: PinState | None = None,
    *,
    keys: Mapping[KeyReference, SlotKey] | None = None,
    objects: Mapping[ObjectTag, bytes] | None = None,
    on_change: ChangeSink | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> PIVApplet:
    """The PIV application over ``profile``'s first four credentials (keys 9A, 9C, 9D, 9E), with
    the card's PIN as its application PIN.

    ``puk`` is the PUK (``None``: a blocked one, see :func:`blocked_puk`); ``keys`` and
    ``objects`` are what the card kept from earlier GENERATE and PUT DATA (they win over the
    credentials' and over :func:`piv_capability_container`); ``on_change`` receives what the
    applet changes, to keep.
    """
    slots = {
        reference: SlotKey(held.key, held.certificate.public_bytes(serialization.Encoding.DER))
        for reference, held in zip(PIV_KEYS, profile.credentials, strict=False)
    }
    slots.update(keys or {})
    ccc = piv_capability_container(profile.card_id, profile.applications)
    return PIVApplet(
        pin=None,
        puk=blocked_puk(random) if puk is None else puk,
        keys=slots,
        objects={ObjectTag.CARD_CAPABILITY_CONTAINER: ccc, **(objects or {})},
        on_change=on_change,
        random=random,
    )


def new_card(
    profile: CardProfile,
    pin: PinState,
    *,
    on_state_change: StateSink | None = None,
    piv: PIVApplet | None = None,
    random: Callable[[int], bytes] = os.urandom,
) -> Card:
    """A powered card with ``profile``'s contents and applications, and PIN state ``pin``.

    On a card with PIV, the application PIN (``80``) is the card's PIN: one retry counter,
    persisted through ``on_state_change``, and one verified state for every application.
    ``piv`` is the PIV application to use (default: :func:`piv_applet` with a blocked PUK and
    nothing kept).
    """
    applets: list[Applet] = cac_applets(profile) if profile.applications.cac else []
    if profile.applications.piv:
        applets.append(piv if piv is not None else piv_applet(profile, random=random))
    return Card(
        applets,
        pin,
        atr=profile.atr,
        on_state_change=on_state_change,
        random=random,
        selection_survives_miss=profile.applications.piv,
    )
