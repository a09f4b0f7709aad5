"""SoftHSM2 tokens for tests: a set-up of their own, and certificates with keys stored on them.

Private keys stored here are sensitive and not extractable: a test that signs or derives with
them proves the card never reads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pkcs11
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType
from pkcs11.util.ec import decode_ec_private_key, encode_named_curve_parameters
from pkcs11.util.rsa import decode_rsa_private_key
from pkcs11.util.x509 import decode_x509_certificate

from cacard.pkcs11 import SOFTHSM2_MODULE

from .certificates import issue

PIN = "77777777"
SO_PIN = "12345678"
LABEL = "vscard"


def softhsm_missing() -> bool:
    """Whether SoftHSM2 (Debian package softhsm2) is absent."""
    return not Path(SOFTHSM2_MODULE).exists() or shutil.which("softhsm2-util") is None


def softhsm(directory: Path, *, mechanisms: str = "ALL") -> Path:
    """A SoftHSM2 set-up in ``directory`` with one empty token; returns its own module copy.

    SoftHSM2 reads ``SOFTHSM2_CONF`` once, at C_Initialize, and python-pkcs11 initialises each
    module path once per process: a copy of the module per set-up gives each its own instance.
    """
    (directory / "tokens").mkdir(parents=True)
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        f"log.level = ERROR\nslots.mechanisms = {mechanisms}\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(config)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            LABEL,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ],
        check=True,
        capture_output=True,
    )
    module = directory / "libsofthsm2.so"
    shutil.copy(SOFTHSM2_MODULE, module)
    pkcs11.lib(str(module))  # initialise now, while SOFTHSM2_CONF points here
    return module


def store_certificate(
    session: pkcs11.Session, certificate: bytes, key_id: bytes, label: str
) -> None:
    attributes = decode_x509_certificate(certificate)
    attributes.update({Attribute.TOKEN: True, Attribute.ID: key_id, Attribute.LABEL: label})
    session.create_object(attributes)


#: What a stored private key may do, and that it never leaves the token.
_PRIVATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
}


def _der(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _import_key(
    session: pkcs11.Session,
    attributes: dict[Attribute, object],
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    key_id: bytes,
    label: str,
) -> None:
    """Store a private key's ``attributes`` under ``key_id`` (sensitive, not extractable) and
    a certificate for ``public_key``."""
    session.create_object({**attributes, **_PRIVATE, Attribute.ID: key_id, Attribute.LABEL: label})
    der_cert = issue(public_key, label).public_bytes(serialization.Encoding.DER)
    store_certificate(session, der_cert, key_id, label)


def import_rsa_key(
    session: pkcs11.Session, key: rsa.RSAPrivateKey, key_id: bytes, label: str
) -> None:
    """Store ``key`` (for signing and decryption) and a certificate for it."""
    attributes = decode_rsa_private_key(_der(key))
    attributes.update({Attribute.SIGN: True, Attribute.DECRYPT: True})
    _import_key(session, attributes, key.public_key(), key_id, label)


def import_ec_key(
    session: pkcs11.Session, key: ec.EllipticCurvePrivateKey, key_id: bytes, label: str
) -> None:
    """Store ``key`` (for ECDSA and ECDH) and a certificate for it."""
    attributes = decode_ec_private_key(_der(key))
    attributes.update({Attribute.SIGN: True, Attribute.DERIVE: True})
    _import_key(session, attributes, key.public_key(), key_id, label)


def generate_ec_key(
    session: pkcs11.Session, curve: ec.EllipticCurve, key_id: bytes, label: str
) -> ec.EllipticCurvePublicKey:
    """An EC key pair made by the token (the private key sensitive, not extractable), stored
    with its public key under ``key_id``; returns the public key. No certificate."""
    parameters = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve.name)}, local=True
    )
    public, _ = parameters.generate_keypair(
        store=True,
        id=key_id,
        label=label,
        private_template={**_PRIVATE, Attribute.SIGN: True, Attribute.DERIVE: True},
    )
    point = OctetString.load(public[Attribute.EC_POINT]).native
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
