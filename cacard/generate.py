"""``cacard new``: a fresh test card, with a CA and certificates issued by it.

The certificates follow a CAC's three roles, in OpenSC's label order:

1. ID (OpenSC: "CAC ID Certificate"): digital signature; client authentication, smart-card
   logon.
2. Signature ("CAC Email Signature Certificate"): digital signature and non-repudiation;
   e-mail protection.
3. Encryption ("CAC Email Encryption Certificate"): key and data encipherment; e-mail
   protection.

Certificates 4-10 can both sign and decrypt. A card with PIV (``--profile piv`` or ``cac+piv``)
holds the first three as keys 9A, 9C and 9D too. All share the holder's name; the card id, hence the
token serial, is random. Person Instance holds the holder's first and last name.
"""

from __future__ import annotations

import datetime
import enum
import os
import secrets
from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .applets.ccc import CARD_ID_SIZE
from .applets.containers import DataObjectId
from .applets.pki import MAX_PKI_APPLETS
from .atr import CAC_ATR, ATRError, atr_problem
from .pin import DEFAULT_ITERATIONS, DEFAULT_MAX_TRIES, DEFAULT_PIN, PinState, check_pin
from .piv.applet import MIN_PIV_PIN_LENGTH
from .profile import PIV_KEYS, Applications, ProfileError
from .rsa import check_rsa_key_size
from .store import CardStore, CredentialFiles, NewCard, create
from .tlv import TLV, encode

DEFAULT_CERTIFICATES: Final = 3
DEFAULT_KEY_SIZE: Final = 2048
DEFAULT_NAME: Final = "Test User"
VALIDITY: Final = datetime.timedelta(days=3 * 365)
#: Microsoft's smart-card logon extended key usage.
SMARTCARD_LOGON: Final = ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")
#: Person Instance tags for first and last name (as a real CAC's Person Instance uses them).
PERSON_FIRST_NAME: Final = 0x01
PERSON_LAST_NAME: Final = 0x03


_CA_KEY_USAGE: Final = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


class Role(enum.Enum):
    """What a certificate on the card is for."""

    ID = "ID"
    SIGNATURE = "Signature"
    ENCRYPTION = "Encryption"
    GENERAL = "General"


_ROLES: Final = (Role.ID, Role.SIGNATURE, Role.ENCRYPTION)


def role(index: int) -> Role:
    return _ROLES[index] if index < len(_ROLES) else Role.GENERAL


def _key_usage(which: Role) -> x509.KeyUsage:
    sign = which in (Role.ID, Role.SIGNATURE, Role.GENERAL)
    encrypt = which in (Role.ENCRYPTION, Role.GENERAL)
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=which is Role.SIGNATURE,
        key_encipherment=encrypt,
        data_encipherment=encrypt,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _extended_key_usage(which: Role) -> x509.ExtendedKeyUsage:
    if which is Role.ID:
        return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, SMARTCARD_LOGON])
    if which is Role.GENERAL:
        return x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION]
        )
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])


@dataclass(frozen=True)
class CardRequest:
    """What ``cacard new`` makes."""

    pin: str = DEFAULT_PIN
    certificates: int = DEFAULT_CERTIFICATES
    key_size: int = DEFAULT_KEY_SIZE
    name: str = DEFAULT_NAME
    max_tries: int = DEFAULT_MAX_TRIES
    pin_iterations: int = DEFAULT_ITERATIONS
    #: libcacard's CAC ATR by default; :data:`cacard.atr.CAC_ATR_T1` offers T=1 as well.
    atr: bytes = CAC_ATR
    applications: Applications = Applications.CAC

    def __post_init__(self) -> None:
        if not 1 <= self.certificates <= MAX_PKI_APPLETS:
            raise ValueError(
                f"a CAC card holds 1 to {MAX_PKI_APPLETS} certificates, not {self.certificates}"
            )
        if not self.applications.cac and self.certificates > len(PIV_KEYS):
            raise ProfileError(
                f"a PIV card holds 1 to {len(PIV_KEYS)} certificates (keys 9A, 9C, 9D)",
                field="certificates",
                value=self.certificates,
            )
        check_rsa_key_size(self.key_size)
        check_pin(self.pin)
        if self.applications.piv and len(self.pin) < MIN_PIV_PIN_LENGTH:
            # The PIV PIN is the card's PIN, and PIV's VERIFY takes 6 to 8 digits.
            raise ProfileError(
                f"a card with PIV needs a PIN of {MIN_PIV_PIN_LENGTH} to 8 digits",
                field="pin",
                value=f"{len(self.pin)} digits",
            )
        if not self.name.strip():
            raise ValueError("the holder's name must not be empty")
        if (problem := atr_problem(self.atr)) is not None:
            raise ATRError(problem, value=self.atr.hex().upper())


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: rsa.RSAPublicKey,
    signer: rsa.RSAPrivateKey,
    now: datetime.datetime,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def person_instance(name: str) -> bytes:
    """Person Instance content for ``name`` ("First Last")."""
    first, _, last = name.strip().partition(" ")
    return encode(
        [TLV(PERSON_FIRST_NAME, first.encode()), TLV(PERSON_LAST_NAME, last.strip().encode())]
    )


def generate_card(directory: str | os.PathLike[str], request: CardRequest) -> CardStore:
    """Make a new card in ``directory`` (which must not exist or be empty)."""
    card_id = secrets.token_bytes(CARD_ID_SIZE)
    now = datetime.datetime.now(datetime.UTC)
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cacard test")
    ca_key = rsa.generate_private_key(65537, request.key_size)
    ca_name = x509.Name(
        [org, x509.NameAttribute(NameOID.COMMON_NAME, f"cacard test CA {card_id[-4:].hex()}")]
    )
    ca = _certificate(
        ca_name,
        ca_name,
        ca_key.public_key(),
        ca_key,
        now,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_CA_KEY_USAGE, True),
        ],
    )
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    subject = x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, request.name)])
    credentials = []
    for index in range(request.certificates):
        which = role(index)
        key = rsa.generate_private_key(65537, request.key_size)
        certificate = _certificate(
            subject,
            ca_name,
            key.public_key(),
            ca_key,
            now,
            [
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (_key_usage(which), True),
                (_extended_key_usage(which), False),
                (authority, False),
            ],
        )
        credentials.append(CredentialFiles(certificate, key, which.value))
    pin = PinState.create(
        request.pin, max_tries=request.max_tries, iterations=request.pin_iterations
    )
    return create(
        directory,
        NewCard(
            credentials,
            card_id,
            pin,
            atr=request.atr,
            applications=request.applications,
            data_objects={DataObjectId.PERSON_INSTANCE: person_instance(request.name)},
            extra_files={"ca.pem": ca.public_bytes(serialization.Encoding.PEM)},
        ),
    )
