"""A card from a PKCS#11 token: a real SoftHSM2 token, keys that never leave it."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pkcs11
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pkcs11 import Attribute, KeyType

from cacard.keys import CardKey, ECCardKey, KeyOperationError, key_description
from cacard.pkcs11 import SOFTHSM2_MODULE, Token, TokenECKey, TokenError, TokenKey, open_token
from cacard.rsa import UnsupportedKeyError
from tests.cacard.certificates import issue
from tests.cacard.softhsm import (
    LABEL,
    PIN,
    generate_ec_key,
    import_ec_key,
    import_rsa_key,
    softhsm,
    store_certificate,
)
from tests.logs import capture_logs

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        not Path(SOFTHSM2_MODULE).exists() or shutil.which("softhsm2-util") is None,
        reason="SoftHSM2 is not installed (apt-get install softhsm2)",
    ),
]

MESSAGE = b"data to sign (max 100 bytes)\n"
PSS = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
OAEP = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


def populate(module: Path) -> dict[str, rsa.RSAPrivateKey]:
    """Three imported RSA keys (ID 01-03), one generated on the token (ID 04, unextractable),
    an imported P-256 key (ID 05), a certificate without a key (ID 06), a P-384 key generated
    on the token (ID 07), a P-521 one (ID 08), an EC certificate without a key (ID 09) and one
    whose ID has another P-256 key (ID 0A). Every private key is sensitive."""
    keys = {f"cert{i}": rsa.generate_private_key(65537, 2048) for i in (1, 2, 3)}
    token = pkcs11.lib(str(module)).get_token(token_label=LABEL)
    with token.open(rw=True, user_pin=PIN) as session:
        # Stored out of order: the card lists them by CKA_ID.
        for key_id, label in ((b"\x02", "cert2"), (b"\x01", "cert1"), (b"\x03", "cert3")):
            import_rsa_key(session, keys[label], key_id, label)
        public, _ = session.generate_keypair(
            KeyType.RSA,
            3072,
            store=True,
            id=b"\x04",
            label="on-token",
            private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False},
        )
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        )
        on_token = issue(numbers.public_key(), "on-token").public_bytes(serialization.Encoding.DER)
        store_certificate(session, on_token, b"\x04", "on-token")
        import_ec_key(session, ec.generate_private_key(ec.SECP256R1()), b"\x05", "ec")
        store(session, rsa.generate_private_key(65537, 2048).public_key(), b"\x06", "orphan")
        for key_id, label, curve in (
            (b"\x07", "ec384", ec.SECP384R1()),
            (b"\x08", "p521", ec.SECP521R1()),
        ):
            store(session, generate_ec_key(session, curve, key_id, label), key_id, label)
        store(session, ec.generate_private_key(ec.SECP256R1()).public_key(), b"\x09", "ec-orphan")
        generate_ec_key(session, ec.SECP256R1(), b"\x0a", "other-point")
        stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
        store(session, stranger, b"\x0a", "other-point")
    return keys


def store(
    session: pkcs11.Session, public_key: CertificatePublicKeyTypes, key_id: bytes, label: str
) -> None:
    der = issue(public_key, label).public_bytes(serialization.Encoding.DER)
    store_certificate(session, der, key_id, label)


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    saved = os.environ.get("SOFTHSM2_CONF")
    path = softhsm(tmp_path_factory.mktemp("softhsm"))
    yield path
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(scope="module")
def software_keys(module: Path) -> dict[str, rsa.RSAPrivateKey]:
    return populate(module)


@pytest.fixture
def token(module: Path, software_keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[Token]:
    with capture_logs(), open_token(module, pin=PIN, token_label=LABEL) as opened:
        yield opened


def by_label(token: Token, label: str) -> CardKey:
    key = next(c.key for c in token.credentials if c.label == label)
    assert not isinstance(key, ECCardKey)
    return key


def encoded(key: CardKey, signature: bytes) -> bytes:
    numbers = key.public_key.public_numbers()
    return pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(
        key.key_size // 8, "big"
    )


def type1_block(size: int, payload: bytes) -> bytes:
    return b"\x00\x01" + b"\xff" * (size - 3 - len(payload)) + b"\x00" + payload


def sha256_digest_info(message: bytes) -> bytes:
    return (
        bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
    )


def test_rsa_and_ec_certificates_with_keys_become_credentials_in_cka_id_order(
    module: Path, software_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    with capture_logs() as logs, open_token(module, pin=PIN) as token:
        assert [(c.label, key_description(c.key)) for c in token.credentials] == [
            ("cert1", "RSA-2048"),
            ("cert2", "RSA-2048"),
            ("cert3", "RSA-2048"),
            ("on-token", "RSA-3072"),
            ("ec", "P-256"),
            ("ec384", "P-384"),
        ]
        assert all(isinstance(c.key, TokenKey) and c.key.raw for c in token.credentials[:4])
        assert all(isinstance(c.key, TokenECKey) for c in token.credentials[4:])
    skipped = {e["label"]: e["reason"] for e in logs if e["event"] == "pkcs11_certificate_skipped"}
    assert skipped == {
        "orphan": "0 RSA private keys have its CKA_ID 06",
        "p521": "curve secp521r1 is not supported (a card holds secp256r1, secp384r1)",
        "ec-orphan": "0 EC private keys have its CKA_ID 09",
        "other-point": "the public key with CKA_ID 0a has another point",
    }


def ec_key(token: Token, label: str) -> ECCardKey:
    key = next(c.key for c in token.credentials if c.label == label)
    assert isinstance(key, ECCardKey)
    return key


def uncompressed(public_key: ec.EllipticCurvePublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


@pytest.mark.parametrize(
    ("label", "algorithm"), [("ec", hashes.SHA256()), ("ec384", hashes.SHA384())]
)
def test_ecdsa_on_the_token_gives_signatures_the_certificate_verifies(
    token: Token, label: str, algorithm: hashes.HashAlgorithm
) -> None:
    credential = next(c for c in token.credentials if c.label == label)
    digest = hashes.Hash(algorithm)
    digest.update(MESSAGE)
    signature = ec_key(token, label).sign_digest(digest.finalize())
    public = credential.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, MESSAGE, ec.ECDSA(algorithm))


@pytest.mark.parametrize("label", ["ec", "ec384"])
def test_ecdh_on_the_token_equals_cryptographys_exchange(token: Token, label: str) -> None:
    key = ec_key(token, label)
    for _ in range(4):
        peer = ec.generate_private_key(key.curve)
        expected = peer.exchange(ec.ECDH(), key.public_key)
        assert key.exchange(uncompressed(peer.public_key())) == expected


def test_ec_keys_on_the_token_cannot_be_read_from_it(module: Path, token: Token) -> None:
    session = pkcs11.lib(str(module)).get_token(token_label=LABEL).open()  # shares the login
    try:
        for key_id in (b"\x05", b"\x07"):
            private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=key_id)
            with pytest.raises(pkcs11.AttributeSensitive):
                private[Attribute.VALUE]
            assert private[Attribute.EXTRACTABLE] is False
            assert private[Attribute.SENSITIVE] is True
    finally:
        session.close()


def test_ecdh_leaves_no_object_on_the_token(module: Path, token: Token) -> None:
    key = ec_key(token, "ec")
    for _ in range(3):
        key.exchange(uncompressed(ec.generate_private_key(key.curve).public_key()))
    session = pkcs11.lib(str(module)).get_token(token_label=LABEL).open()  # shares the login
    try:
        assert not list(session.get_objects({Attribute.CLASS: pkcs11.ObjectClass.SECRET_KEY}))
    finally:
        session.close()


def test_a_digest_of_the_wrong_length_is_refused(token: Token) -> None:
    with pytest.raises(KeyOperationError, match="digest is 48 bytes; a secp256r1 key signs 32"):
        ec_key(token, "ec").sign_digest(bytes(48))


@pytest.mark.parametrize(
    ("point", "match"),
    [
        (b"\x04" + bytes(64), "peer point"),  # not on the curve
        (b"\x04" + bytes(96), "peer point"),  # a P-384 length
    ],
)
def test_a_bad_peer_point_is_refused_before_the_token_sees_it(
    token: Token, point: bytes, match: str
) -> None:
    with pytest.raises(KeyOperationError, match=match):
        ec_key(token, "ec").exchange(point)


def test_a_compressed_peer_point_is_refused(token: Token) -> None:
    key = ec_key(token, "ec")
    compressed = (
        ec.generate_private_key(key.curve)
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    )
    with pytest.raises(KeyOperationError, match="not uncompressed"):
        key.exchange(compressed)


def test_ec_keys_stop_working_when_the_token_is_closed(module: Path, software_keys: object) -> None:
    with capture_logs(), open_token(module, pin=PIN, labels=["ec"]) as token:
        key = ec_key(token, "ec")
    with pytest.raises(KeyOperationError, match="token refused ECDSA"):
        key.sign_digest(bytes(32))
    with pytest.raises(KeyOperationError, match="token refused ECDH"):
        key.exchange(uncompressed(ec.generate_private_key(key.curve).public_key()))


def test_concurrent_ec_operations_from_threads_stay_correct(token: Token) -> None:
    key = ec_key(token, "ec")
    peers = [ec.generate_private_key(key.curve) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        secrets = list(pool.map(lambda peer: key.exchange(uncompressed(peer.public_key())), peers))
        signatures = list(pool.map(key.sign_digest, [bytes([i]) * 32 for i in range(8)]))
    assert secrets == [peer.exchange(ec.ECDH(), key.public_key) for peer in peers]
    for i, signature in enumerate(signatures):
        key.public_key.verify(signature, bytes([i]) * 32, ec.ECDSA(Prehashed(hashes.SHA256())))


@pytest.mark.parametrize("label", ["cert1", "on-token"])
def test_pkcs1_signature_blocks_give_signatures_the_certificate_verifies(
    token: Token, label: str
) -> None:
    credential = next(c for c in token.credentials if c.label == label)
    public = credential.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    key = credential.key
    assert not isinstance(key, ECCardKey)
    block = type1_block(key.key_size // 8, sha256_digest_info(MESSAGE))
    signature = key.private_operation(block)
    public.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_signatures_match_the_software_key_exactly(
    token: Token, software_keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    software = software_keys["cert2"]
    key = by_label(token, "cert2")
    pss_signature = software.sign(MESSAGE, PSS, hashes.SHA256())
    assert key.private_operation(encoded(key, pss_signature)) == pss_signature
    pkcs1_signature = software.sign(MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    assert key.private_operation(encoded(key, pkcs1_signature)) == pkcs1_signature


@pytest.mark.parametrize("label", ["cert3", "on-token"])
def test_pkcs1_and_oaep_ciphertexts_give_the_raw_block(token: Token, label: str) -> None:
    key = by_label(token, label)
    for scheme in (padding.PKCS1v15(), OAEP):
        ciphertext = key.public_key.encrypt(b"1234567890\n", scheme)
        block = key.private_operation(ciphertext)
        assert encoded(key, block) == ciphertext
    assert block[0] == 0


def test_pss_block_signed_on_the_token_verifies(token: Token) -> None:
    key = by_label(token, "on-token")
    # Encode with a throwaway software key of the same size, then move the encoding across:
    # PSS encoding depends only on the message, salt and modulus size.
    throwaway = rsa.generate_private_key(65537, 3072)
    numbers = throwaway.public_key().public_numbers()
    signature = throwaway.sign(MESSAGE, PSS, hashes.SHA256())
    em = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(384, "big")
    key.public_key.verify(key.private_operation(em), MESSAGE, PSS, hashes.SHA256())


def test_key_generated_on_the_token_cannot_be_read_from_it(module: Path, token: Token) -> None:
    session = pkcs11.lib(str(module)).get_token(token_label=LABEL).open()
    try:
        private = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY, id=b"\x04")
        with pytest.raises(pkcs11.AttributeSensitive):
            private[Attribute.PRIVATE_EXPONENT]
        assert private[Attribute.EXTRACTABLE] is False
    finally:
        session.close()


def test_labels_pick_certificates_in_the_given_order(module: Path, software_keys: object) -> None:
    with open_token(module, pin=PIN, labels=["cert3", "cert1"]) as token:
        assert [c.label for c in token.credentials] == ["cert3", "cert1"]


@pytest.mark.parametrize(
    ("labels", "error", "match"),
    [
        (["nope"], TokenError, r"no certificate labelled \['nope'\]"),
        (["p521"], UnsupportedKeyError, "curve secp521r1 is not supported"),
        (["orphan"], TokenError, "0 RSA private keys"),
        (["ec-orphan"], TokenError, "'ec-orphan': 0 EC private keys"),
        (["other-point"], TokenError, "has another point"),
    ],
)
def test_a_requested_certificate_that_cannot_be_used_is_an_error(
    module: Path, software_keys: object, labels: list[str], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        open_token(module, pin=PIN, labels=labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pin": "00000000"}, "PinIncorrect"),
        ({"pin": None}, "needs a PIN"),
        ({"pin": PIN, "token_label": "other"}, "has no initialised token labelled 'other'"),
    ],
)
def test_wrong_pin_missing_pin_and_unknown_token_are_errors(
    module: Path, software_keys: object, kwargs: dict[str, str | None], match: str
) -> None:
    with pytest.raises(TokenError, match=match):
        open_token(module, **kwargs)  # type: ignore[arg-type]


def test_missing_module_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="cannot load PKCS#11 module"):
        open_token(tmp_path / "absent.so", pin=PIN)


@pytest.mark.parametrize("length", [0, 255, 257])
def test_block_of_the_wrong_length_is_refused(token: Token, length: int) -> None:
    with pytest.raises(KeyOperationError, match=f"block is {length} bytes"):
        by_label(token, "cert1").private_operation(b"\x00" * length)


def test_block_not_below_the_modulus_is_refused(token: Token) -> None:
    with pytest.raises(KeyOperationError, match="not below the modulus"):
        by_label(token, "cert1").private_operation(b"\xff" * 256)


def test_keys_stop_working_when_the_token_is_closed(module: Path, software_keys: object) -> None:
    with open_token(module, pin=PIN) as token:
        key = token.credentials[0].key
    assert not isinstance(key, ECCardKey)
    with pytest.raises(KeyOperationError, match="token refused"):
        key.private_operation(type1_block(256, b"x"))


def test_concurrent_operations_from_threads_stay_correct(token: Token) -> None:
    key = by_label(token, "cert1")
    ciphertexts = [key.public_key.encrypt(bytes([i]), padding.PKCS1v15()) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        blocks = list(pool.map(key.private_operation, ciphertexts))
    assert [block[-1:] for block in blocks] == [bytes([i]) for i in range(16)]


@pytest.fixture(scope="module")
def no_raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SoftHSM2 whose slots have CKM_RSA_X_509 switched off."""
    saved = os.environ.get("SOFTHSM2_CONF")
    # SoftHSM2 2.6.1 ignores the first name of a "-" (disable) list, hence the empty one.
    module = softhsm(tmp_path_factory.mktemp("softhsm-no-raw"), mechanisms="-,CKM_RSA_X_509")
    populate(module)
    yield module
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


class TestTokenWithoutRawRsa:
    """A token without raw RSA: libcacard's fallback."""

    @pytest.fixture
    def key(self, no_raw: Path) -> Iterator[CardKey]:
        with capture_logs(), open_token(no_raw, pin=PIN, labels=["cert1"]) as token:
            key = token.credentials[0].key
            assert isinstance(key, TokenKey)
            assert not key.raw, "the token does not list CKM_RSA_X_509, so the fallback is used"
            yield key

    def test_pkcs1_signature_block_is_signed_exactly(self, key: CardKey) -> None:
        block = type1_block(256, sha256_digest_info(MESSAGE))
        signature = key.private_operation(block)
        key.public_key.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        assert encoded(key, signature) == block

    def test_pkcs1_ciphertext_is_rewrapped_around_the_same_plaintext(self, key: CardKey) -> None:
        block = key.private_operation(key.public_key.encrypt(b"1234567890\n", padding.PKCS1v15()))
        assert block == b"\x00\x02" + b"\x03" * (256 - 3 - 11) + b"\x00" + b"1234567890\n"

    def test_pss_block_cannot_be_signed(self, key: CardKey) -> None:
        throwaway = rsa.generate_private_key(65537, 2048)
        numbers = throwaway.public_key().public_numbers()
        signature = throwaway.sign(MESSAGE, PSS, hashes.SHA256())
        em = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(256, "big")
        try:
            result = key.private_operation(em)
        except KeyOperationError:
            return  # the token found no type-2 padding
        with pytest.raises(InvalidSignature):  # implicit rejection: a random "plaintext"
            key.public_key.verify(result, MESSAGE, PSS, hashes.SHA256())

    def test_raw_rsa_can_be_forced_off_on_a_token_that_has_it(
        self, module: Path, software_keys: object
    ) -> None:
        with open_token(module, pin=PIN, labels=["cert1"], raw_rsa=False) as token:
            key = token.credentials[0].key
            assert isinstance(key, TokenKey)
            assert not key.raw
            signature = key.private_operation(type1_block(256, sha256_digest_info(MESSAGE)))
            key.public_key.verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


#: A host's P-256 key by its scalar, or None: the point is junk.
_SCALAR = st.one_of(st.none(), st.integers(1, 2**255))
_JUNK = st.one_of(st.binary(max_size=200), st.binary(min_size=64, max_size=64).map(b"\x04".__add__))


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scalar=_SCALAR, junk=_JUNK)
def test_any_peer_point_gives_the_shared_secret_or_a_refusal(
    token: Token, scalar: int | None, junk: bytes
) -> None:
    key = ec_key(token, "ec")
    if scalar is None:
        # Junk is refused here; had it reached the token, the error would name the token.
        with pytest.raises(KeyOperationError, match=r"^peer point"):
            key.exchange(junk)
        return
    host = ec.derive_private_key(scalar, key.curve)
    assert key.exchange(uncompressed(host.public_key())) == host.exchange(ec.ECDH(), key.public_key)
