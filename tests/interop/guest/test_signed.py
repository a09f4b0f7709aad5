"""Signatures and ECDH secrets made in the guest, read back and verified on the host: fast, no
QEMU."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .checks import (
    DERIVED_PREFIX,
    SIGNED_PREFIX,
    GuestDerivation,
    GuestSignature,
    derive_for_host,
    derived_in_guest,
    sign_for_host,
    signed_in_guest,
)

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


def test_a_pss_signature_has_a_salt_as_long_as_the_hash(rsa_key: rsa.RSAPrivateKey) -> None:
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    signature = rsa_key.sign(DATA, pss, hashes.SHA256())
    signed = signed_in_guest(guest_output("SHA256-RSA-PKCS-PSS", signature))
    signed.verify(rsa_key.public_key())
    unsalted = rsa_key.sign(DATA, padding.PSS(padding.MGF1(hashes.SHA256()), 0), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        signed_in_guest(guest_output("SHA256-RSA-PKCS-PSS", unsalted)).verify(rsa_key.public_key())


def test_sign_for_host_spells_out_the_pss_parameters() -> None:
    body = sign_for_host("SHA256-RSA-PKCS-PSS", key_id="01").body
    assert "-m SHA256-RSA-PKCS-PSS --mgf MGF1-SHA256 --salt-len 32 " in body
    assert "--hash-algorithm" not in body  # pkcs11-tool refuses it beside a hashing mechanism
    assert "--mgf" not in sign_for_host("SHA256-RSA-PKCS", key_id="01").body


def test_an_ecdsa_sha384_signature_is_over_the_data() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(hashes.SHA384())))
    raw = r.to_bytes(48) + s.to_bytes(48)
    signed_in_guest(guest_output("ECDSA-SHA384", raw)).verify(key.public_key())
    assert "openssl dgst" not in sign_for_host("ECDSA-SHA384", key_id="04").body
    r, s = decode_dss_signature(key.sign(DATA, ec.ECDSA(hashes.SHA256())))
    with pytest.raises(InvalidSignature):
        signed_in_guest(guest_output("ECDSA-SHA384", r.to_bytes(48) + s.to_bytes(48))).verify(
            key.public_key()
        )


def _der(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def derive_output(peer: bytes, secret: bytes) -> str:
    """What a derive_for_host check prints, around the lines the host reads."""
    parts = {"peer": peer, "secret": secret, "certificate": CERTIFICATE}
    lines = ["key ID 03", "Using derive algorithm 0x00001050 ECDH1-DERIVE", "secret: 48 bytes"]
    lines += [f"{DERIVED_PREFIX}{k}: {base64.b64encode(v).decode()}" for k, v in parts.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def ecdh_keys() -> tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey]:
    """The card's key and the host's, both P-384."""
    return ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP384R1())


def test_an_ecdh_secret_comes_back_and_matches(
    ecdh_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey],
) -> None:
    card, host = ecdh_keys
    secret = card.exchange(ec.ECDH(), host.public_key())
    derived = derived_in_guest(derive_output(_der(host), secret))
    assert derived == GuestDerivation(_der(host), secret, CERTIFICATE)
    derived.verify(host, card.public_key())


def test_a_wrong_ecdh_secret_or_peer_is_named(
    ecdh_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey],
) -> None:
    card, host = ecdh_keys
    secret = card.exchange(ec.ECDH(), host.public_key())
    wrong = derived_in_guest(derive_output(_der(host), secret[:-1] + bytes([secret[-1] ^ 1])))
    with pytest.raises(ValueError, match=r"secret \(48 bytes, [0-9a-f]+\) is not the host's"):
        wrong.verify(host, card.public_key())
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(ValueError, match="another peer key"):
        derived_in_guest(derive_output(_der(other), secret)).verify(host, card.public_key())
    with pytest.raises(TypeError, match="ECDH needs an EC public key"):
        derived_in_guest(derive_output(_der(host), secret)).verify(
            host, rsa.generate_private_key(65537, 1024).public_key()
        )
    without = "\n".join(
        line for line in derive_output(_der(host), secret).splitlines() if "secret:" not in line
    )
    with pytest.raises(ValueError, match="lacks secret"):
        derived_in_guest(without)


def test_derive_for_host_writes_the_peer_key_in_the_guest(
    ecdh_keys: tuple[ec.EllipticCurvePrivateKey, ec.EllipticCurvePrivateKey],
    tmp_path: Path,
) -> None:
    _, host = ecdh_keys
    check = derive_for_host(_der(host), key_id="03")
    assert check.name == "host-derive.ECDH1-DERIVE.id03"
    assert "--derive -m ECDH1-DERIVE --id" in check.body
    (line,) = [line for line in check.body.splitlines() if "base64 -d" in line]
    subprocess.run(
        ["sh", "-c", line], env={"VS": str(tmp_path), "PATH": "/usr/bin:/bin"}, check=True
    )
    assert (tmp_path / "peer.der").read_bytes() == _der(host)
