"""SoftwareKey: the raw RSA operation a CAC card performs on blocks the host padded."""

from __future__ import annotations

import ctypes.util
import hashlib
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from hypothesis import given, settings
from hypothesis import strategies as st

import cacard.rsa
from cacard.keys import CardKey, KeyOperationError
from cacard.rsa import SoftwareKey, UnsupportedKeyError, check_rsa_key_size, type1_payload
from tests.logs import capture_logs

SIZES = (1024, 2048, 3072, 4096)
MESSAGE = b"data to sign (max 100 bytes)\n"


@pytest.fixture(scope="module")
def keys() -> dict[int, rsa.RSAPrivateKey]:
    return {bits: rsa.generate_private_key(65537, bits) for bits in SIZES}


@pytest.fixture(scope="module")
def key_2048(keys: dict[int, rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    return keys[2048]


def as_int(data: bytes) -> int:
    return int.from_bytes(data, "big")


def public_op(key: rsa.RSAPrivateKey, value: bytes) -> bytes:
    """``value ** e mod n``: undoes the private operation (and pads nothing)."""
    numbers = key.public_key().public_numbers()
    return pow(as_int(value), numbers.e, numbers.n).to_bytes(key.key_size // 8, "big")


def pkcs1_type1_block(key_bytes: int, payload: bytes) -> bytes:
    return b"\x00\x01" + b"\xff" * (key_bytes - 3 - len(payload)) + b"\x00" + payload


def sha256_digest_info(message: bytes) -> bytes:
    # RFC 8017 §9.2 note 1: the DER DigestInfo prefix for SHA-256.
    return (
        bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
    )


def mgf1_sha256(seed: bytes, length: int) -> bytes:
    out = b"".join(
        hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        for counter in range(length // 32 + 1)
    )
    return out[:length]


def oaep_sha256_decode(em: bytes) -> bytes:
    """RFC 8017 §7.1.2 step 3, empty label: what the host does with the card's raw result."""
    h = 32
    assert em[0] == 0
    masked_seed, masked_db = em[1 : 1 + h], em[1 + h :]
    seed = bytes(a ^ b for a, b in zip(masked_seed, mgf1_sha256(masked_db, h), strict=True))
    db = bytes(a ^ b for a, b in zip(masked_db, mgf1_sha256(seed, len(masked_db)), strict=True))
    assert db[:h] == hashlib.sha256(b"").digest()
    rest = db[h:].lstrip(b"\x00")
    assert rest[0] == 1
    return rest[1:]


OAEP = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
PSS = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)


@pytest.mark.parametrize("bits", SIZES)
class TestEveryPaddingAtEverySize:
    def test_pkcs1_v15_signature_block_gives_a_signature_cryptography_verifies(
        self, keys: dict[int, rsa.RSAPrivateKey], bits: int
    ) -> None:
        key = keys[bits]
        block = pkcs1_type1_block(bits // 8, sha256_digest_info(MESSAGE))
        signature = SoftwareKey(key).private_operation(block)
        key.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        assert signature == key.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())

    def test_pss_encoded_block_gives_a_signature_cryptography_verifies(
        self, keys: dict[int, rsa.RSAPrivateKey], bits: int
    ) -> None:
        key = keys[bits]
        # The host's PSS encoding, recovered from a PSS signature by the public operation.
        encoded = public_op(key, key.sign(MESSAGE, PSS, hashes.SHA256()))
        assert type1_payload(encoded) is None
        signature = SoftwareKey(key).private_operation(encoded)
        key.public_key().verify(signature, MESSAGE, PSS, hashes.SHA256())

    def test_pkcs1_v15_ciphertext_gives_the_type2_block_holding_the_plaintext(
        self, keys: dict[int, rsa.RSAPrivateKey], bits: int
    ) -> None:
        key = keys[bits]
        ciphertext = key.public_key().encrypt(b"1234567890\n", padding.PKCS1v15())
        block = SoftwareKey(key).private_operation(ciphertext)
        assert public_op(key, block) == ciphertext
        assert block[:2] == b"\x00\x02"
        assert block[2:].split(b"\x00", 1)[1] == b"1234567890\n"

    def test_oaep_ciphertext_gives_the_encoded_block_holding_the_plaintext(
        self, keys: dict[int, rsa.RSAPrivateKey], bits: int
    ) -> None:
        key = keys[bits]
        ciphertext = key.public_key().encrypt(b"secret", OAEP)
        block = SoftwareKey(key).private_operation(ciphertext)
        assert public_op(key, block) == ciphertext
        assert oaep_sha256_decode(block) == b"secret"

    def test_pure_python_fallback_gives_the_same_results(
        self, keys: dict[int, rsa.RSAPrivateKey], bits: int, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = keys[bits]
        fast = SoftwareKey(key)
        monkeypatch.setattr(cacard.rsa, "_libcrypto", lambda: None)
        slow = SoftwareKey(key)
        ciphertext = key.public_key().encrypt(b"x", OAEP)
        signature_block = pkcs1_type1_block(bits // 8, sha256_digest_info(MESSAGE))
        for block in (ciphertext, signature_block):
            assert slow.private_operation(block) == fast.private_operation(block)


def test_software_key_satisfies_the_card_key_contract(key_2048: rsa.RSAPrivateKey) -> None:
    card_key: CardKey = SoftwareKey(key_2048)
    assert card_key.key_size == 2048
    assert card_key.public_key.public_numbers() == key_2048.public_key().public_numbers()


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_any_block_below_the_modulus_gets_the_raw_result(
    key_2048: rsa.RSAPrivateKey, data: st.DataObject
) -> None:
    n = key_2048.public_key().public_numbers().n
    block = data.draw(st.integers(0, n - 1)).to_bytes(256, "big")
    assert public_op(key_2048, SoftwareKey(key_2048).private_operation(block)) == block


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=256 - 11))
def test_type1_fast_path_is_exactly_the_raw_operation(
    key_2048: rsa.RSAPrivateKey, payload: bytes
) -> None:
    block = pkcs1_type1_block(256, payload)
    assert type1_payload(block) == payload
    result = SoftwareKey(key_2048).private_operation(block)
    assert public_op(key_2048, result) == block
    assert result == key_2048.sign(payload, padding.PKCS1v15(), utils.NoDigestInfo())


@pytest.mark.parametrize(
    ("block", "why"),
    [
        (b"\x00\x01" + b"\xff" * 7 + b"\x00" + b"x" * 246, "7 FF bytes: too short for PKCS#1"),
        (b"\x00\x01" + b"\xff" * 8 + b"\xfe" + b"\x00" + b"x" * 244, "a non-FF padding byte"),
        (b"\x00\x01" + b"\xff" * 254, "no 00 separator"),
        (b"\x00\x02" + b"\xff" * 8 + b"\x00" + b"x" * 245, "block type 2"),
    ],
)
def test_blocks_pkcs1_would_not_rebuild_take_the_raw_path_and_stay_exact(
    key_2048: rsa.RSAPrivateKey, block: bytes, why: str
) -> None:
    assert type1_payload(block) is None, why
    assert public_op(key_2048, SoftwareKey(key_2048).private_operation(block)) == block


def test_zero_and_one_are_their_own_raw_results(key_2048: rsa.RSAPrivateKey) -> None:
    card_key = SoftwareKey(key_2048)
    for value in (0, 1):
        block = value.to_bytes(256, "big")
        assert card_key.private_operation(block) == block


@pytest.mark.parametrize("length", [0, 1, 255, 257, 512])
def test_block_of_the_wrong_length_is_refused(key_2048: rsa.RSAPrivateKey, length: int) -> None:
    with pytest.raises(KeyOperationError, match=f"block is {length} bytes"):
        SoftwareKey(key_2048).private_operation(b"\x00" * length)


@pytest.mark.parametrize("offset", [0, 1, 1 << 100])
@pytest.mark.parametrize("libcrypto", [True, False], ids=["libcrypto", "python"])
def test_block_not_below_the_modulus_is_refused(
    key_2048: rsa.RSAPrivateKey, offset: int, libcrypto: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not libcrypto:
        monkeypatch.setattr(cacard.rsa, "_libcrypto", lambda: None)
    n = key_2048.public_key().public_numbers().n
    with pytest.raises(KeyOperationError, match="not below the modulus"):
        SoftwareKey(key_2048).private_operation((n + offset).to_bytes(256, "big"))


def test_all_ff_block_is_refused(key_2048: rsa.RSAPrivateKey) -> None:
    with pytest.raises(KeyOperationError):
        SoftwareKey(key_2048).private_operation(b"\xff" * 256)


@pytest.mark.parametrize(
    "key",
    [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()],
    ids=["ec-p256", "ed25519"],
)
def test_non_rsa_keys_are_refused_by_name(key: PrivateKeyTypes) -> None:
    with pytest.raises(UnsupportedKeyError, match=r"not an RSA key.*RSA only"):
        SoftwareKey(key)


@pytest.mark.parametrize("bits", [512, 1016, 1028, 4104, 8192])
def test_rsa_sizes_a_cac_card_cannot_hold_are_refused(bits: int) -> None:
    with pytest.raises(UnsupportedKeyError, match=f"{bits} bits"):
        check_rsa_key_size(bits)


def test_rsa_key_of_odd_size_is_refused() -> None:
    with pytest.raises(UnsupportedKeyError, match="1028 bits"):
        SoftwareKey(rsa.generate_private_key(65537, 1028))


def test_concurrent_operations_from_threads_stay_correct(key_2048: rsa.RSAPrivateKey) -> None:
    card_key = SoftwareKey(key_2048)
    ciphertexts = [key_2048.public_key().encrypt(bytes([i]), OAEP) for i in range(32)]
    with ThreadPoolExecutor(4) as pool:
        blocks = list(pool.map(card_key.private_operation, ciphertexts))
    assert [oaep_sha256_decode(block) for block in blocks] == [bytes([i]) for i in range(32)]


def test_missing_libcrypto_is_reported_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cacard.rsa, "_LIBCRYPTO_NAMES", ("libcrypto-that-is-not-there.so.3",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with capture_logs() as logs:
        assert cacard.rsa._libcrypto.__wrapped__() is None
    assert [entry["event"] for entry in logs] == ["libcrypto_missing"]
    assert "libssl3" in logs[0]["fix"]


def test_a_wrong_pkcs1_sign_result_sends_type1_blocks_to_the_raw_path(
    key_2048: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def wrong(self: SoftwareKey, block: bytes) -> bytes:
        return b"\x00" * len(block)

    monkeypatch.setattr(SoftwareKey, "_sign_type1", wrong)
    with capture_logs() as logs:
        card_key = SoftwareKey(key_2048)
    assert "pkcs1_sign_not_raw" in [entry["event"] for entry in logs]
    block = pkcs1_type1_block(256, sha256_digest_info(MESSAGE))
    signature = card_key.private_operation(block)
    key_2048.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_signature_of_a_different_block_does_not_verify(key_2048: rsa.RSAPrivateKey) -> None:
    block = pkcs1_type1_block(256, sha256_digest_info(b"other"))
    signature = SoftwareKey(key_2048).private_operation(block)
    with pytest.raises(InvalidSignature):
        key_2048.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
