"""Test certificates for key-store tests: a CA that issues one certificate per public key."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

CA_KEY = rsa.generate_private_key(65537, 2048)
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vscard test CA")])


def issue(public_key: CertificatePublicKeyTypes, common_name: str) -> x509.Certificate:
    """A certificate for ``public_key``, signed by the test CA, valid for a day."""
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(CA_NAME)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(CA_KEY, hashes.SHA256())
    )
