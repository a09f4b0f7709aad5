"""Credentials from PEM, DER and PKCS#12 files."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils
from cryptography.hazmat.primitives.serialization import pkcs12

from cacard.keys import ECCardKey
from cacard.sources import (
    SourceError,
    credential,
    load_certificate,
    load_credential,
    load_pkcs12,
    read_pkcs12,
)

from .cards import credential as held_credential
from .cards import private_key
from .certificates import issue

PASSWORD = b"secret"


def write_pair(tmp_path: Path, encoding: serialization.Encoding) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert", tmp_path / "key"
    cert.write_bytes(held_credential(0).certificate.public_bytes(encoding))
    private_format = (
        serialization.PrivateFormat.PKCS8
        if encoding is serialization.Encoding.DER
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    key.write_bytes(
        private_key(0).private_bytes(encoding, private_format, serialization.NoEncryption())
    )
    return cert, key


@pytest.mark.parametrize("encoding", [serialization.Encoding.PEM, serialization.Encoding.DER])
def test_a_certificate_and_key_in_pem_or_der(
    tmp_path: Path, encoding: serialization.Encoding
) -> None:
    cert, key = write_pair(tmp_path, encoding)
    loaded = load_credential(cert, key, label="mine")
    assert loaded.certificate == held_credential(0).certificate
    assert loaded.key.public_key.public_numbers() == private_key(0).public_key().public_numbers()
    assert loaded.label == "mine"


def test_an_encrypted_key_needs_its_password(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path, serialization.Encoding.PEM)
    key.write_bytes(
        private_key(0).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    assert load_credential(cert, key, password=PASSWORD).certificate == load_certificate(cert)
    with pytest.raises(SourceError) as caught:
        load_credential(cert, key)
    assert caught.value.path == str(key)


def test_a_pkcs12_file(tmp_path: Path) -> None:
    path = tmp_path / "id.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"id",
            private_key(1),
            held_credential(1).certificate,
            None,
            serialization.BestAvailableEncryption(PASSWORD),
        )
    )
    assert load_pkcs12(path, PASSWORD).certificate == held_credential(1).certificate
    assert read_pkcs12(path, PASSWORD)[0] == held_credential(1).certificate
    with pytest.raises(SourceError, match="wrong password"):
        load_pkcs12(path, b"nope")


def test_a_key_that_does_not_match_its_certificate_is_refused() -> None:
    with pytest.raises(SourceError, match="does not belong"):
        credential(held_credential(0).certificate, private_key(1))


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()])
def test_p256_and_p384_keys_become_ec_credentials(curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    held = credential(issue(key.public_key(), "ec"), key)
    assert isinstance(held.key, ECCardKey)
    digest = hashes.Hash(hashes.SHA256() if curve.key_size == 256 else hashes.SHA384())
    digest.update(b"sign me")
    value = digest.finalize()
    algorithm = hashes.SHA256() if curve.key_size == 256 else hashes.SHA384()
    key.public_key().verify(
        held.key.sign_digest(value), value, ec.ECDSA(utils.Prehashed(algorithm))
    )


def test_other_curves_are_refused_naming_the_curve() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(SourceError, match="secp521r1"):
        credential(issue(key.public_key(), "ec"), key)


def test_missing_and_garbage_files_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as caught:
        load_certificate(tmp_path / "missing.pem")
    assert caught.value.path.endswith("missing.pem")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x30\x03\x01\x01\x00")
    with pytest.raises(SourceError, match=r"not an X\.509"):
        load_certificate(garbage)


def test_keys_of_other_kinds_are_refused_naming_what_a_card_holds() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(SourceError, match=r"Ed25519PrivateKey is not a key a card holds"):
        credential(issue(ec.generate_private_key(ec.SECP256R1()).public_key(), "x"), key)
