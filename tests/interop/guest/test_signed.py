"""Signatures made in the guest, read back and verified on the host: fast, no QEMU."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .checks import SIGNED_PREFIX, GuestSignature, sign_for_host, signed_in_guest

DATA = b"vscard guest test data 1234\n"
CERTIFICATE = b"\x30\x03\x02\x01\x01"  # stands for the DER the guest read


def guest_output(mechanism: str, signature: bytes, data: bytes = DATA) -> str:
    """What a sign_for_host check prints, around the lines the host reads."""
    parts = {"mechanism": mechanism.encode(), "data": data, "signature": signature}
    lines = ["key ID 01", "Using signature algorithm " + mechanism]
    lines += [f"{SIGNED_PREFIX}{k}: {base64.b64encode(v).decode()}" for k, v in parts.items()]
    lines.append(f"{SIGNED_PREFIX}certificate: {base64.b64encode(CERTIFICATE).decode()}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


def test_an_rsa_signature_comes_back_and_verifies(rsa_key: rsa.RSAPrivateKey) -> None:
    signature = rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    signed = signed_in_guest(guest_output("SHA256-RSA-PKCS", signature))
    assert signed == GuestSignature("SHA256-RSA-PKCS", DATA, signature, CERTIFICATE)
    signed.verify(rsa_key.public_key())


def test_an_ecdsa_signature_is_r_and_s_over_the_hash() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32) + s.to_bytes(32)  # pkcs11-tool's CKM_ECDSA output
    signed = signed_in_guest(guest_output("ECDSA", raw))
    signed.verify(key.public_key())
    with pytest.raises(TypeError, match="ECDSA needs an EC public key"):
        signed.verify(rsa.generate_private_key(65537, 1024).public_key())


def test_other_data_does_not_verify(rsa_key: rsa.RSAPrivateKey) -> None:
    signature = rsa_key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
    signed = signed_in_guest(guest_output("SHA256-RSA-PKCS", signature, data=DATA + b"x"))
    with pytest.raises(InvalidSignature):
        signed.verify(rsa_key.public_key())


def test_a_missing_part_is_named() -> None:
    output = "\n".join(
        line
        for line in guest_output("ECDSA", b"\x01" * 64).splitlines()
        if "signature:" not in line
    )
    with pytest.raises(ValueError, match="lacks signature"):
        signed_in_guest(output)


def test_sign_for_host_knows_its_mechanisms() -> None:
    assert sign_for_host("ECDSA", key_id="02").name == "host-sign.ECDSA.id02"
    assert "openssl dgst -sha256 -binary" in sign_for_host("ECDSA", key_id="02").body
    with pytest.raises(ValueError, match="cannot sign with RSA-PKCS-PSS"):
        sign_for_host("RSA-PKCS-PSS", key_id="01")
