"""Cards with PIV from an NSS database and from a PKCS#11 token (``applications``): EC and RSA
keys through the PIV application's APDUs, answers checked with ``cryptography``; the PUK, and
generated keys that live only as long as the card is served."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from cacard.atr import CAC_ATR, CAC_ATR_T1, PIV_ATR
from cacard.backends import Backend, BackendError, NssDatabase, Pkcs11Token, open_backend
from cacard.card import Card
from cacard.piv import PIV_AID, ApplicationPropertyTemplate
from cacard.piv.ber import decode_fields, decode_one, encode
from cacard.profile import Applications
from cardfloor.iso7816.apdu import CommandAPDU, Response
from tests.cacard.certificates import issue
from tests.logs import capture_logs

pytestmark = pytest.mark.interop  # real certutil/pk12util and SoftHSM2

PIN = "123456"
TOKEN_PIN = "77777777"  # tests.cacard.softhsm.PIN
PUK = "24681357"
MGMT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
#: PIV algorithm identifiers (SP 800-78-4 Table 6-2).
RSA_2048, P256, P384 = 0x07, 0x11, 0x14

#: Key material in card order for a ``piv`` card: 9A P-256, 9C RSA-2048, 9D P-384.
PIV_ORDER = ("p256", "rsa", "p384")
#: For a ``cac+piv`` card: the RSA key first (the CAC's ID certificate and PIV's 9A).
CAC_PIV_ORDER = ("rsa", "p256", "p384")


# -- APDUs as a host sends them ---------------------------------------------------------------


def tx(
    card: Card, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None
) -> Response:
    """One command, its answer collected through GET RESPONSE as a T=0 host does."""
    command = CommandAPDU(cla, ins, p1, p2, data, le, len(data) > 255)
    answer = Response.from_bytes(card.transmit(command.to_bytes()))
    body = answer.data
    while answer.sw1 == 0x61:  # T=0: GET RESPONSE
        answer = Response.from_bytes(card.transmit(bytes((0, 0xC0, 0, 0, answer.sw2))))
        body += answer.data
    return Response(answer.sw, body)


def select_piv(card: Card) -> Response:
    return tx(card, 0x00, 0xA4, 0x04, 0x00, PIV_AID, le=256)


def verify(card: Card, pin: str | None, reference: int = 0x80) -> int:
    data = b"" if pin is None else pin.encode().ljust(8, b"\xff")
    return tx(card, 0x00, 0x20, 0x00, reference, data).sw


def template(*items: tuple[int, bytes]) -> bytes:
    return encode([(0x7C, encode(items))])


def authenticate(card: Card, alg: int, key: int, *items: tuple[int, bytes]) -> bytes:
    """GENERAL AUTHENTICATE asking for a response (``82`` empty); the response."""
    answer = tx(card, 0x00, 0x87, alg, key, template((0x82, b""), *items), le=256)
    assert answer.sw == 0x9000, f"{answer.sw:04X}"
    return decode_fields(decode_one(answer.data, 0x7C), where="test")[0x82]


def ecdsa(card: Card, alg: int, key: int, message: bytes) -> tuple[bytes, hashes.HashAlgorithm]:
    algorithm = hashes.SHA256() if alg == P256 else hashes.SHA384()
    digest = hashes.Hash(algorithm)
    digest.update(message)
    return authenticate(card, alg, key, (0x81, digest.finalize())), algorithm


def ecdh(card: Card, alg: int, key: int, host: ec.EllipticCurvePrivateKey) -> bytes:
    point = host.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return authenticate(card, alg, key, (0x85, point))


def rsa_sign(card: Card, key: int, message: bytes) -> bytes:
    info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    block = b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info
    return authenticate(card, RSA_2048, key, (0x81, block))


def authenticate_management(card: Card) -> None:
    """9B challenge-response with the default 3DES key, computed here."""
    answer = tx(card, 0x00, 0x87, 0x03, 0x9B, template((0x81, b"")), le=256)
    challenge = decode_fields(decode_one(answer.data, 0x7C), where="test")[0x81]
    encryptor = Cipher(TripleDES(MGMT_KEY), modes.ECB()).encryptor()
    response = encryptor.update(challenge) + encryptor.finalize()
    assert tx(card, 0x00, 0x87, 0x03, 0x9B, template((0x82, response))).sw == 0x9000


def ec_public(certificate: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    return public


def rsa_public(certificate: x509.Certificate) -> rsa.RSAPublicKey:
    public = certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    return public


# -- the same keys in an NSS database and on a token -------------------------------------------

#: A backend with the named keys in that order, and these options.
MakeBackend = Callable[..., Backend]


@pytest.fixture(scope="module")
def nss_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    if shutil.which("certutil") is None or shutil.which("pk12util") is None:
        pytest.skip("NSS tools are not installed (apt-get install libnss3-tools)")
    from .nssdb import import_key, make_key_in_nss, nss_db

    tmp = tmp_path_factory.mktemp("nss-piv")
    db = nss_db(tmp / "db", "")
    import_key(db, "", "rsa", rsa.generate_private_key(65537, 2048), tmp)
    import_key(db, "", "p256", ec.generate_private_key(ec.SECP256R1()), tmp)
    make_key_in_nss(db, "", "p384", "nistp384", tmp)
    return db


@pytest.fixture(scope="module")
def token_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 (the 'pkcs11' extra) is missing")
    from . import softhsm as hsm

    if hsm.softhsm_missing():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    saved = os.environ.get("SOFTHSM2_CONF")
    module = hsm.softhsm(tmp_path_factory.mktemp("softhsm-piv"))
    token = pkcs11.lib(str(module)).get_token(token_label=hsm.LABEL)
    with token.open(rw=True, user_pin=TOKEN_PIN) as session:
        hsm.import_rsa_key(session, rsa.generate_private_key(65537, 2048), b"\x01", "rsa")
        public = hsm.generate_ec_key(session, ec.SECP256R1(), b"\x02", "p256")
        der = issue(public, "p256").public_bytes(serialization.Encoding.DER)
        hsm.store_certificate(session, der, b"\x02", "p256")
        hsm.import_ec_key(session, ec.generate_private_key(ec.SECP384R1()), b"\x03", "p384")
    yield module
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


@pytest.fixture(params=["nss", "pkcs11"])
def make_backend(request: pytest.FixtureRequest) -> MakeBackend:
    """Backends over the same names: NSS nicknames or token labels."""
    if request.param == "nss":
        db = request.getfixturevalue("nss_db")
        return lambda names, **options: NssDatabase(db, tuple(names), pin=PIN, **options)
    module = str(request.getfixturevalue("token_module"))
    return lambda names, **options: Pkcs11Token(
        module, labels=tuple(names), token_pin=TOKEN_PIN, pin=PIN, **options
    )


def certificates(card: Card) -> dict[str, x509.Certificate]:
    """The certificates of the PIV keys, read back from the card (GET DATA)."""
    found = {}
    for name, tag in (("9A", "5FC105"), ("9C", "5FC10A"), ("9D", "5FC10B")):
        data = tx(card, 0x00, 0xCB, 0x3F, 0xFF, encode([(0x5C, bytes.fromhex(tag))]), le=256)
        assert data.sw == 0x9000, f"{name}: {data.sw:04X}"
        fields = decode_fields(decode_one(data.data, 0x53), where="test")
        found[name] = x509.load_der_x509_certificate(fields[0x70])
    return found


# -- a card with PIV only ----------------------------------------------------------------------


def test_a_piv_card_signs_with_ecdsa_and_agrees_with_ecdh(make_backend: MakeBackend) -> None:
    with (
        capture_logs(),
        open_backend(make_backend(PIV_ORDER, applications=Applications.PIV)) as card,
    ):
        assert card.atr == PIV_ATR
        selected = select_piv(card)
        assert selected.sw == 0x9000
        assert ApplicationPropertyTemplate.from_bytes(selected.data).algorithms
        held = certificates(card)
        assert verify(card, None) == 0x63C3
        assert verify(card, PIN) == 0x9000

        signature, algorithm = ecdsa(card, P256, 0x9A, b"P-256 on 9A")
        ec_public(held["9A"]).verify(signature, b"P-256 on 9A", ec.ECDSA(algorithm))

        host = ec.generate_private_key(ec.SECP384R1())
        assert ecdh(card, P384, 0x9D, host) == host.exchange(ec.ECDH(), ec_public(held["9D"]))

        verify(card, PIN)  # 9C wants the PIN right before each signature
        signature = rsa_sign(card, 0x9C, b"RSA on 9C")
        rsa_public(held["9C"]).verify(signature, b"RSA on 9C", padding.PKCS1v15(), hashes.SHA256())


def test_ecdh_on_a_p256_key_of_the_backend(make_backend: MakeBackend) -> None:
    names = ("rsa", "p384", "p256")  # 9D P-256
    with capture_logs(), open_backend(make_backend(names, applications=Applications.PIV)) as card:
        select_piv(card)
        held = certificates(card)
        verify(card, PIN)
        host = ec.generate_private_key(ec.SECP256R1())
        assert ecdh(card, P256, 0x9D, host) == host.exchange(ec.ECDH(), ec_public(held["9D"]))


def test_a_cac_piv_card_serves_rsa_to_the_cac_and_ec_keys_to_piv(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend(CAC_PIV_ORDER, applications=Applications.CAC_PIV)
    with capture_logs(), open_backend(backend) as card:
        assert card.atr == CAC_ATR_T1
        # The CAC's one PKI applet holds the RSA key: a PKCS#1 signature through it.
        assert tx(card, 0x00, 0xA4, 0x04, 0x0C, bytes.fromhex("A000000079 0100")).sw == 0x9000
        assert verify(card, PIN, reference=0x00) == 0x9000
        info = SHA256_DIGEST_INFO + hashlib.sha256(b"CAC").digest()
        block = b"\x00\x01" + b"\xff" * (256 - 3 - len(info)) + b"\x00" + info
        assert tx(card, 0x00, 0x42, 0x80, 0x00, block[:128]).sw == 0x9000
        cac_signature = tx(card, 0x00, 0x42, 0x00, 0x00, block[128:], le=256)
        assert cac_signature.sw == 0x9000

        assert select_piv(card).sw == 0x9000
        held = certificates(card)
        rsa_public(held["9A"]).verify(
            cac_signature.data, b"CAC", padding.PKCS1v15(), hashes.SHA256()
        )
        assert verify(card, PIN) == 0x9000
        signature, algorithm = ecdsa(card, P256, 0x9C, b"P-256 on 9C")
        ec_public(held["9C"]).verify(signature, b"P-256 on 9C", ec.ECDSA(algorithm))
        host = ec.generate_private_key(ec.SECP384R1())
        assert ecdh(card, P384, 0x9D, host) == host.exchange(ec.ECDH(), ec_public(held["9D"]))


def test_the_atr_of_a_piv_card_can_be_chosen(make_backend: MakeBackend) -> None:
    backend = make_backend(PIV_ORDER, applications=Applications.PIV, atr=CAC_ATR_T1)
    with capture_logs(), open_backend(backend) as card:
        assert card.atr == CAC_ATR_T1


# -- EC keys on a CAC card -----------------------------------------------------------------------


def test_a_cac_card_refuses_ec_keys_and_says_to_use_piv(make_backend: MakeBackend) -> None:
    with (
        capture_logs(),
        pytest.raises(BackendError, match=r"'p256' has an EC key.*--profile piv or cac\+piv"),
    ):
        open_backend(make_backend(("rsa", "p256"))).__enter__()


def test_a_token_gives_a_cac_card_of_its_rsa_keys_unless_ec_ones_are_asked_for(
    token_module: Path,
) -> None:
    backend = Pkcs11Token(str(token_module), token_pin=TOKEN_PIN, pin=PIN)
    with capture_logs() as logs, open_backend(backend) as card:
        assert card.atr == CAC_ATR
        assert select_piv(card).sw == 0x6A82  # no PIV application
    skipped = [e["label"] for e in logs if e["event"] == "pkcs11_certificate_skipped"]
    assert skipped == ["p256", "p384"]
    with (
        capture_logs(),
        open_backend(
            Pkcs11Token(str(token_module), token_pin=TOKEN_PIN, applications=Applications.PIV)
        ) as card,
    ):
        assert select_piv(card).sw == 0x9000
        assert set(certificates(card)) == {"9A", "9C", "9D"}


def test_a_token_with_only_ec_keys_on_a_cac_card_says_to_use_piv(token_module: Path) -> None:
    backend = Pkcs11Token(str(token_module), labels=("p384",), token_pin=TOKEN_PIN)
    with capture_logs(), pytest.raises(BackendError, match=r"--profile piv or cac\+piv"):
        open_backend(backend).__enter__()


# -- the PUK, and generated keys -----------------------------------------------------------------


def test_a_puk_given_unblocks_the_pin(make_backend: MakeBackend) -> None:
    backend = make_backend(PIV_ORDER, applications=Applications.PIV, puk=PUK)
    with capture_logs(), open_backend(backend) as card:
        select_piv(card)
        for left in (2, 1, 0):
            assert verify(card, "000000") == 0x63C0 | left
        new_pin = b"654321".ljust(8, b"\xff")
        assert tx(card, 0x00, 0x2C, 0x00, 0x80, b"00000000" + new_pin).sw == 0x63C2
        assert tx(card, 0x00, 0x2C, 0x00, 0x80, PUK.encode() + new_pin).sw == 0x9000
        assert verify(card, "654321") == 0x9000


def test_without_a_puk_the_puk_is_blocked(make_backend: MakeBackend) -> None:
    with (
        capture_logs(),
        open_backend(make_backend(PIV_ORDER, applications=Applications.PIV)) as card,
    ):
        select_piv(card)
        new_pin = b"654321".ljust(8, b"\xff")
        assert tx(card, 0x00, 0x2C, 0x00, 0x80, b"00000000" + new_pin).sw == 0x6983


def test_a_generated_key_lives_until_the_card_is_closed(make_backend: MakeBackend) -> None:
    backend = make_backend(PIV_ORDER, applications=Applications.PIV)
    with capture_logs(), open_backend(backend) as card:
        select_piv(card)
        authenticate_management(card)
        answer = tx(card, 0x00, 0x47, 0x00, 0x9A, bytes.fromhex("AC03800111"), le=256)
        assert answer.sw == 0x9000
        point = decode_fields(decode_one(answer.data, 0x7F49), where="test")[0x86]
        generated = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        verify(card, PIN)
        signature, algorithm = ecdsa(card, P256, 0x9A, b"new key")
        generated.verify(signature, b"new key", ec.ECDSA(algorithm))
    with capture_logs(), open_backend(backend) as card:  # the backend's key is back
        select_piv(card)
        held = certificates(card)
        verify(card, PIN)
        signature, algorithm = ecdsa(card, P256, 0x9A, b"old key")
        ec_public(held["9A"]).verify(signature, b"old key", ec.ECDSA(algorithm))
        with pytest.raises(InvalidSignature):
            generated.verify(signature, b"old key", ec.ECDSA(algorithm))


def test_too_many_certificates_for_a_piv_card_say_to_pick_some(token_module: Path) -> None:
    from tests.cacard import softhsm as hsm

    pkcs11 = pytest.importorskip("pkcs11")
    token = pkcs11.lib(str(token_module)).get_token(token_label=hsm.LABEL)
    extra = [(bytes([0x10 + i]), f"extra{i}") for i in range(3)]
    with token.open(rw=True, user_pin=TOKEN_PIN) as session:
        for key_id, label in extra:
            hsm.import_ec_key(session, ec.generate_private_key(ec.SECP256R1()), key_id, label)
    try:
        backend = Pkcs11Token(str(token_module), token_pin=TOKEN_PIN, applications=Applications.PIV)
        with capture_logs(), pytest.raises(BackendError, match="pick certificates by"):
            open_backend(backend).__enter__()
    finally:
        with token.open(rw=True, user_pin=TOKEN_PIN) as session:
            for key_id, _ in extra:
                for obj in session.get_objects({pkcs11.Attribute.ID: key_id}):
                    obj.destroy()
