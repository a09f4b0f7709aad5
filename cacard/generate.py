"""``cacard new``: a fresh test card, with a CA and certificates issued by it.

The certificates follow a CAC's three roles, in OpenSC's label order:

1. ID (OpenSC: "CAC ID Certificate"): digital signature; client authentication, smart-card
   logon.
2. Signature ("CAC Email Signature Certificate"): digital signature and non-repudiation;
   e-mail protection.
3. Encryption ("CAC Email Encryption Certificate"): key and data encipherment; e-mail
   protection.

Certificates 4-10 can both sign and decrypt. A card with PIV (``--profile piv`` or ``cac+piv``)
holds the first three as keys 9A, 9C and 9D too, and may hold P-256 and P-384 keys there
(:class:`KeyKind`; OpenSC's CAC driver is RSA-only, so a CAC card holds RSA keys). An EC
encryption certificate (9D) says key agreement, as ECDH keys do (RFC 5480 §3). With a UPN, the
ID certificate (PIV Authentication, 9A) carries it as Microsoft's smart card logon expects:
subjectAltName otherName UPN, and key encipherment beside digital signature when it is RSA.

All share the holder's name; the card id, hence the token serial, is random. Person Instance
holds the holder's first and last name. The test CA is RSA, of the largest RSA size asked for
(``key_size`` at least): every relying party verifies an RSA issuer, and an EC certificate
issued by one is ordinary X.509.
"""

from __future__ import annotations

import datetime
import enum
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from .applets.ccc import CARD_ID_SIZE
from .applets.containers import DataObjectId
from .applets.pki import MAX_PKI_APPLETS
from .atr import ATRError, atr_problem
from .pin import (
    DEFAULT_ITERATIONS,
    DEFAULT_MAX_TRIES,
    DEFAULT_PIN,
    PUK_TRIES,
    PinState,
    check_pin,
    check_puk,
)
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
#: Microsoft's User Principal Name, an otherName of subjectAltName (a UTF8String).
UPN: Final = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
#: The PIV PUK: 8 digits; by default the well-known value PIV tools assume (yubico-piv-tool's).
DEFAULT_PUK: Final = "12345678"
#: Said when a PIN is too short for PIV but a CAC-only card would take it.
PIV_PIN_HINT: Final = " (--profile cac takes 4)"
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
    #: PIV's 9E: proves the card, not the holder (no PIN), e.g. to a door or a terminal.
    CARD_AUTHENTICATION = "Card Authentication"
    GENERAL = "General"


_ROLES: Final = (Role.ID, Role.SIGNATURE, Role.ENCRYPTION)
#: id-PIV-cardAuth (FIPS 201-3; NIST SP 800-73-4 Part 1, Card Authentication Key).
PIV_CARD_AUTH: Final = ObjectIdentifier("2.16.840.1.101.3.6.8")
#: ``--key`` slot names of a card with PIV: the certificate (0-based) of each PIV key.
PIV_SLOT_NAMES: Final = {f"{reference:02x}": index for index, reference in enumerate(PIV_KEYS)}


def role(index: int, applications: Applications = Applications.CAC) -> Role:
    """The role of certificate ``index`` (0-based): the fourth is PIV's 9E on a card with PIV."""
    if index < len(_ROLES):
        return _ROLES[index]
    if applications.piv and index == len(_ROLES):
        return Role.CARD_AUTHENTICATION
    return Role.GENERAL


@dataclass(frozen=True)
class KeyKind:
    """The kind of key a certificate gets: RSA of ``rsa_bits``, or EC on ``curve``."""

    rsa_bits: int | None = None
    #: ``secp256r1`` or ``secp384r1``.
    curve: str | None = None

    def __post_init__(self) -> None:
        if (self.rsa_bits is None) == (self.curve is None):
            raise ValueError("a key kind is RSA bits or an EC curve")
        if self.rsa_bits is not None:
            check_rsa_key_size(self.rsa_bits)
        elif self.curve not in _CURVES:
            raise ProfileError("curve not supported", field="curve", value=self.curve)

    @classmethod
    def named(cls, name: str) -> KeyKind:
        """``rsa2048``, ``rsa3072``, ``rsa4096``, ``p256`` or ``p384`` (any case)."""
        kind = KEY_KINDS.get(name.strip().lower())
        if kind is None:
            raise ProfileError(
                f"a key kind is one of {', '.join(KEY_KINDS)}", field="key", value=name
            )
        return kind

    @property
    def is_ec(self) -> bool:
        return self.curve is not None

    @property
    def name(self) -> str:
        if self.curve is not None:
            return _CURVE_NAMES[self.curve]
        return f"rsa{self.rsa_bits}"

    def generate(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        if self.curve is not None:
            return ec.generate_private_key(_CURVES[self.curve])
        assert self.rsa_bits is not None
        return rsa.generate_private_key(65537, self.rsa_bits)


_CURVES: Final[dict[str, ec.EllipticCurve]] = {
    "secp256r1": ec.SECP256R1(),
    "secp384r1": ec.SECP384R1(),
}
_CURVE_NAMES: Final = {"secp256r1": "p256", "secp384r1": "p384"}
#: The kinds ``--key`` names.
KEY_KINDS: Final = {
    "rsa2048": KeyKind(rsa_bits=2048),
    "rsa3072": KeyKind(rsa_bits=3072),
    "rsa4096": KeyKind(rsa_bits=4096),
    "p256": KeyKind(curve="secp256r1"),
    "p384": KeyKind(curve="secp384r1"),
}


def check_card_pin(pin: str, applications: Applications, *, hint: str = "") -> str:
    """``pin`` if a card with ``applications`` can hold it: 4 to 8 digits, and 6 to 8 on a card
    with PIV, whose PIV PIN is the card's PIN; :class:`ProfileError` (``hint`` appended to its
    reason) or :class:`~cacard.pin.PinFormatError` otherwise."""
    check_pin(pin)
    if applications.piv and len(pin) < MIN_PIV_PIN_LENGTH:
        # PIV's VERIFY takes 6 to 8 digits (SP 800-73-4 Part 2 §2.4.3).
        raise ProfileError(
            f"a card with PIV needs a PIN of {MIN_PIV_PIN_LENGTH} to 8 digits{hint}",
            field="pin",
            value=f"{len(pin)} digits",
        )
    return pin


def check_upn(upn: str) -> str:
    """``upn`` if it is a User Principal Name, NAME@REALM; :class:`ProfileError` naming it
    otherwise."""
    name, at, realm = upn.partition("@")
    if not at or not name or not realm or "@" in realm:
        raise ProfileError("a UPN is NAME@REALM, with one @", field="upn", value=upn)
    if any(c.isspace() or not c.isprintable() for c in upn):
        raise ProfileError("a UPN has no spaces or control characters", field="upn", value=upn)
    return upn


def _key_usage(which: Role, kind: KeyKind, upn: bool) -> x509.KeyUsage:
    sign = which in (Role.ID, Role.SIGNATURE, Role.CARD_AUTHENTICATION, Role.GENERAL)
    encrypt = which in (Role.ENCRYPTION, Role.GENERAL) and not kind.is_ec
    if which is Role.ID and upn and not kind.is_ec:
        encrypt = True  # Windows' smart card logon with RSA wants key encipherment too
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=which is Role.SIGNATURE,
        key_encipherment=encrypt,
        data_encipherment=encrypt and which is not Role.ID,
        # An EC key encrypts through ECDH: key agreement, not encipherment (RFC 5480 §3).
        key_agreement=kind.is_ec and which is Role.ENCRYPTION,
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
    if which is Role.CARD_AUTHENTICATION:
        return x509.ExtendedKeyUsage([PIV_CARD_AUTH])
    return x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION])


def upn_name(upn: str) -> x509.SubjectAlternativeName:
    """subjectAltName with ``upn`` as Microsoft's UPN otherName (a DER UTF8String)."""
    raw = upn.encode("utf-8")
    if len(raw) > 0x7F:
        length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
        header = bytes((0x0C, 0x80 | len(length))) + length
    else:
        header = bytes((0x0C, len(raw)))
    return x509.SubjectAlternativeName([x509.OtherName(UPN, header + raw)])


@dataclass(frozen=True)
class CardRequest:
    """What ``cacard new`` makes."""

    pin: str = DEFAULT_PIN
    certificates: int = DEFAULT_CERTIFICATES
    #: The RSA key size of every certificate ``keys`` does not name.
    key_size: int = DEFAULT_KEY_SIZE
    name: str = DEFAULT_NAME
    max_tries: int = DEFAULT_MAX_TRIES
    pin_iterations: int = DEFAULT_ITERATIONS
    #: None: ``applications.default_atr`` (libcacard's CAC ATR on a CAC card, T=1 with PIV).
    atr: bytes | None = None
    applications: Applications = Applications.CAC
    #: The key kind of certificates by index (0-based); the others are RSA of ``key_size``.
    keys: Mapping[int, KeyKind] = field(default_factory=dict)
    #: The ID certificate's User Principal Name (NAME@REALM), for Windows smart card logon.
    upn: str | None = None
    #: The PIV PUK (a card with PIV only); None: :data:`DEFAULT_PUK` on a card with PIV.
    puk: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.certificates <= MAX_PKI_APPLETS:
            raise ValueError(
                f"a CAC card holds 1 to {MAX_PKI_APPLETS} certificates, not {self.certificates}"
            )
        if not self.applications.cac and self.certificates > len(PIV_KEYS):
            raise ProfileError(
                f"a PIV card holds 1 to {len(PIV_KEYS)} certificates (keys 9A, 9C, 9D, 9E)",
                field="certificates",
                value=self.certificates,
            )
        check_rsa_key_size(self.key_size)
        self._check_keys()
        check_card_pin(self.pin, self.applications, hint=PIV_PIN_HINT)
        if self.puk is not None:
            if not self.applications.piv:
                raise ProfileError(
                    "a PUK needs a card with PIV (--profile piv or cac+piv)",
                    field="profile",
                    value=self.applications.value,
                )
            check_puk(self.puk)
        if self.upn is not None:
            check_upn(self.upn)
        if not self.name.strip():
            raise ValueError("the holder's name must not be empty")
        if self.atr is not None and (problem := atr_problem(self.atr)) is not None:
            raise ATRError(problem, value=self.atr.hex().upper())

    def _check_keys(self) -> None:
        for index, kind in self.keys.items():
            where = f"key {index + 1}"
            if not 0 <= index < self.certificates:
                raise ProfileError(
                    f"the card has {self.certificates} certificates",
                    field="key",
                    value=f"{index + 1}={kind.name}",
                )
            if not kind.is_ec:
                continue
            if not self.applications.piv:
                raise ProfileError(
                    "OpenSC's CAC driver is RSA-only: an EC key needs --profile piv or cac+piv",
                    field=where,
                    value=kind.name,
                )
            if index >= len(PIV_KEYS):
                raise ProfileError(
                    f"EC keys are for the PIV keys, certificates 1-{len(PIV_KEYS)}",
                    field=where,
                    value=kind.name,
                )
        if self.applications.cac and all(
            self.kind(index).is_ec for index in range(self.certificates)
        ):
            raise ProfileError(
                "a card with the CAC application needs an RSA certificate (OpenSC's CAC "
                "driver is RSA-only)",
                field="key",
                value=" ".join(self.kind(i).name for i in range(self.certificates)),
            )

    def kind(self, index: int) -> KeyKind:
        """The key kind of certificate ``index`` (0-based)."""
        return self.keys.get(index) or KeyKind(rsa_bits=self.key_size)

    @property
    def puk_or_default(self) -> str | None:
        """The PUK the card gets: None on a card without PIV."""
        if not self.applications.piv:
            return None
        return DEFAULT_PUK if self.puk is None else self.puk


def _certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
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
    kinds = [request.kind(index) for index in range(request.certificates)]
    ca_bits = max([request.key_size, *(k.rsa_bits for k in kinds if k.rsa_bits is not None)])
    ca_key = rsa.generate_private_key(65537, ca_bits)
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
    for index, kind in enumerate(kinds):
        which = role(index, request.applications)
        key = kind.generate()
        upn = request.upn if which is Role.ID else None
        extensions: list[tuple[x509.ExtensionType, bool]] = [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(which, kind, upn is not None), True),
            (_extended_key_usage(which), False),
            (authority, False),
        ]
        if upn is not None:
            extensions.append((upn_name(upn), False))
        certificate = _certificate(subject, ca_name, key.public_key(), ca_key, now, extensions)
        credentials.append(CredentialFiles(certificate, key, which.value))
    pin = PinState.create(
        request.pin, max_tries=request.max_tries, iterations=request.pin_iterations
    )
    puk_value = request.puk_or_default
    puk = None
    if puk_value is not None:
        puk = PinState.create(puk_value, max_tries=PUK_TRIES, iterations=request.pin_iterations)
    return create(
        directory,
        NewCard(
            credentials,
            card_id,
            pin,
            atr=request.applications.default_atr if request.atr is None else request.atr,
            applications=request.applications,
            data_objects={DataObjectId.PERSON_INSTANCE: person_instance(request.name)},
            extra_files={"ca.pem": ca.public_bytes(serialization.Encoding.PEM)},
            puk=puk,
        ),
    )
