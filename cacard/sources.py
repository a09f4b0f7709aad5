"""Card credentials from files a user already has: PEM or DER certificates with their private
keys, and PKCS#12 files. Keys are held in memory as :class:`~cacard.rsa.SoftwareKey` (RSA) or
:class:`~cacard.ec.SoftwareECKey` (P-256, P-384).

(NSS databases and PKCS#11 tokens have their own modules: :mod:`cacard.nss`,
:mod:`cacard.pkcs11`.)
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from .keys import Credential
from .rsa import UnsupportedKeyError
from .software import software_key

_PEM_MARKER = b"-----BEGIN"


class SourceError(Exception):
    """A file that does not give a usable credential; ``path`` says which."""

    def __init__(self, reason: str, *, path: str | os.PathLike[str]) -> None:
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.reason = reason
        self.path = os.fspath(path)


def _read(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise SourceError(error.strerror or str(error), path=path) from None


def load_certificate(path: str | os.PathLike[str]) -> x509.Certificate:
    """The certificate in ``path``: PEM (the first one) or DER."""
    return parse_certificate(_read(path), where=path)


def parse_certificate(
    data: bytes, *, where: str | os.PathLike[str] = "<memory>"
) -> x509.Certificate:
    """The certificate in ``data``, as :func:`load_certificate` takes it; errors name ``where``."""
    try:
        if _PEM_MARKER in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as error:
        raise SourceError(f"not an X.509 certificate ({error})", path=where) from None


def load_private_key(
    path: str | os.PathLike[str], password: bytes | None = None
) -> PrivateKeyTypes:
    """The private key in ``path``: PEM or DER, PKCS#8 or traditional, encrypted or not."""
    return parse_private_key(_read(path), password, where=path)


def parse_private_key(
    data: bytes, password: bytes | None = None, *, where: str | os.PathLike[str] = "<memory>"
) -> PrivateKeyTypes:
    """The private key in ``data``, as :func:`load_private_key` takes it; errors name ``where``."""
    try:
        if _PEM_MARKER in data:
            return serialization.load_pem_private_key(data, password)
        return serialization.load_der_private_key(data, password)
    except TypeError as error:  # a password was needed, or given for a plain key
        raise SourceError(str(error), path=where) from None
    except ValueError as error:
        raise SourceError(f"not a private key, or a wrong password ({error})", path=where) from None


def credential(
    certificate: x509.Certificate,
    key: PrivateKeyTypes,
    *,
    label: str = "",
    where: str | os.PathLike[str] = "<memory>",
) -> Credential:
    """A credential from a certificate and its private key (RSA, P-256 or P-384); they must
    match."""
    try:
        card_key = software_key(key)
    except UnsupportedKeyError as error:
        raise SourceError(str(error), path=where) from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if certificate.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != card_key.public_key.public_bytes(serialization.Encoding.DER, spki):
        raise SourceError(
            f"the private key does not belong to certificate "
            f"{certificate.subject.rfc4514_string()!r}",
            path=where,
        )
    return Credential(certificate, card_key, label)


def load_credential(
    certificate: str | os.PathLike[str],
    key: str | os.PathLike[str],
    *,
    password: bytes | None = None,
    label: str = "",
) -> Credential:
    """A credential from a certificate file and a key file (they may be the same PEM file)."""
    return credential(
        load_certificate(certificate),
        load_private_key(key, password),
        label=label,
        where=key,
    )


def read_pkcs12(
    path: str | os.PathLike[str], password: bytes | None = None
) -> tuple[x509.Certificate, PrivateKeyTypes]:
    """The certificate and private key of a PKCS#12 file (other certificates in it are ignored)."""
    data = _read(path)
    try:
        key, certificate, _chain = pkcs12.load_key_and_certificates(data, password)
    except ValueError as error:
        raise SourceError(f"not PKCS#12, or a wrong password ({error})", path=path) from None
    if key is None or certificate is None:
        raise SourceError("PKCS#12 file without both a private key and its certificate", path=path)
    return certificate, key


def load_pkcs12(path: str | os.PathLike[str], password: bytes | None = None) -> Credential:
    """The credential in a PKCS#12 file."""
    certificate, key = read_pkcs12(path, password)
    return credential(certificate, key, where=path)
