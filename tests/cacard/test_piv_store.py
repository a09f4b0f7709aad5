"""A card directory with PIV (#15): EC keys per slot, a UPN, a real PUK, and what the PIV
application changes (generated keys, written objects, the PUK counter) kept across restarts.

``fixtures/card-v2-piv`` was made by ``python -m cacard new DIR --profile cac+piv --key-size
1024`` at commit 856739b, before cards kept a PUK or anything PIV changed (PIN 77777777).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard import CardRequest, generate_card
from cacard.card import Card
from cacard.cli import main
from cacard.generate import KEY_KINDS
from cacard.piv.applet import KeyGenerated, ObjectWritten
from cacard.piv.ber import decode_fields, decode_one, encode
from cacard.piv.objects import PIV_AID, CertificateObject, KeyReference, ObjectTag
from cacard.profile import Applications
from cacard.store import (
    MAX_PIV_OBJECT,
    PIV_FILE,
    STATE_FILE,
    CardStore,
    StoreError,
    stable_piv_objects,
)
from cardfloor.iso7816.apdu import CommandAPDU, Response

from .cards import PIN

FIXTURES = Path(__file__).parent / "fixtures"
PUK = "12345678"
MGMT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
ECC_P256, ECC_P384, RSA_1024 = 0x11, 0x14, 0x06
CERT_9A, CERT_9C, CERT_9D = (bytes.fromhex(t) for t in ("5FC105", "5FC10A", "5FC10B"))


# -- APDUs, as a PIV host sends them (copied small from tests/cacard/piv/test_applet.py) ------


def tx(
    card: Card, cla: int, ins: int, p1: int, p2: int, data: bytes = b"", *, extended: bool = False
) -> Response:
    """One command with Le, following ``61xx`` with GET RESPONSE as a T=0 host does."""
    command = CommandAPDU(cla, ins, p1, p2, data, 65536 if extended else 256, extended)
    answer = Response.from_bytes(card.transmit(command.to_bytes()))
    collected = answer.data
    while answer.sw1 == 0x61:
        answer = Response.from_bytes(card.transmit(bytes((0, 0xC0, 0, 0, answer.sw2))))
        collected += answer.data
    return Response(answer.sw, collected)


def pad(pin: str) -> bytes:
    return pin.encode().ljust(8, b"\xff")


def opened(directory: Path) -> Card:
    card = CardStore(directory).open_card()
    assert tx(card, 0x00, 0xA4, 0x04, 0x00, PIV_AID).sw == 0x9000
    return card


def verify(card: Card, pin: str = PIN) -> int:
    return tx(card, 0x00, 0x20, 0x00, 0x80, pad(pin)).sw


def get_data(card: Card, tag: bytes) -> Response:
    return tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes((0x5C, len(tag))) + tag)


def put_data(card: Card, tag: bytes, content: bytes) -> int:
    data = encode([(0x5C, tag), (0x53, content)])
    return tx(card, 0x00, 0xDB, 0x3F, 0xFF, data, extended=len(data) > 255).sw


def template(*items: tuple[int, bytes]) -> bytes:
    return encode([(0x7C, encode(items))])


def general_authenticate(card: Card, alg: int, key: int, data: bytes) -> Response:
    return tx(card, 0x00, 0x87, alg, key, data, extended=len(data) > 255)


def result_of(answer: Response) -> bytes:
    assert answer.sw == 0x9000, f"{answer.sw:04X}"
    return decode_fields(decode_one(answer.data, 0x7C), where="test")[0x82]


def authenticate_management(card: Card) -> None:
    """9B challenge-response with the default 3DES key, computed with ``cryptography``."""
    challenge = decode_fields(
        decode_one(general_authenticate(card, 0x03, 0x9B, template((0x81, b""))).data, 0x7C),
        where="test",
    )[0x81]
    encryptor = Cipher(TripleDES(MGMT_KEY), modes.ECB()).encryptor()
    response = encryptor.update(challenge) + encryptor.finalize()
    assert general_authenticate(card, 0x03, 0x9B, template((0x82, response))).sw == 0x9000


def generate(card: Card, reference: int, algorithm: int) -> bytes:
    """GENERATE ASYMMETRIC KEY PAIR; the public point (EC) or modulus (RSA)."""
    answer = tx(card, 0x00, 0x47, 0x00, reference, bytes((0xAC, 3, 0x80, 1, algorithm)))
    assert answer.sw == 0x9000, f"{answer.sw:04X}"
    fields = decode_fields(decode_one(answer.data, 0x7F49), where="test")
    return fields.get(0x86) or fields[0x81]


def ecdsa(card: Card, reference: int, algorithm: int, message: bytes) -> bytes:
    digest = hashlib.sha256(message).digest()
    return result_of(
        general_authenticate(card, algorithm, reference, template((0x82, b""), (0x81, digest)))
    )


def puk_tries(directory: Path) -> int:
    puk = CardStore(directory).load_puk()
    assert puk is not None
    return puk.tries_remaining


def certificate_in(answer: Response) -> x509.Certificate:
    assert answer.sw == 0x9000, f"{answer.sw:04X}"
    der = CertificateObject.from_bytes(decode_one(answer.data, 0x53)).certificate
    return x509.load_der_x509_certificate(der)


# -- cards -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ec_card(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cacard new DIR --profile cac+piv --key 9c=p256 --key 9d=p384 --upn user@EXAMPLE.ORG``
    (RSA-1024 elsewhere, for speed)."""
    directory = tmp_path_factory.mktemp("piv") / "card"
    argv = ["new", str(directory), "--profile", "cac+piv", "--key", "9c=p256"]
    argv += ["--key", "9d=p384", "--upn", "user@EXAMPLE.ORG", "--key-size", "1024"]
    assert main(argv) == 0
    return directory


@pytest.fixture
def piv_card(tmp_path: Path) -> Path:
    """A fresh ``piv`` card of its own (RSA-1024, one-round PIN and PUK hashes)."""
    directory = tmp_path / "card"
    request = CardRequest(key_size=1024, pin_iterations=1, applications=Applications.PIV)
    generate_card(directory, request)
    return directory


def copy_of(source: Path, tmp_path: Path) -> Path:
    """A fixture copied, since using a card writes to it."""
    directory = tmp_path / source.name
    shutil.copytree(source, directory)
    return directory


# -- key kinds and the UPN -----------------------------------------------------------------------


def test_an_ec_9c_certificate_is_served_and_its_key_signs_after_verify(ec_card: Path) -> None:
    card = opened(ec_card)
    held = certificate_in(get_data(card, CERT_9C))
    public = held.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert verify(card) == 0x9000
    signature = ecdsa(card, 0x9C, ECC_P256, b"signed on 9C")
    digest = hashlib.sha256(b"signed on 9C").digest()
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_an_ec_9d_certificate_agrees_keys(ec_card: Path) -> None:
    card = opened(ec_card)
    public = certificate_in(get_data(card, CERT_9D)).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp384r1"
    host = ec.generate_private_key(ec.SECP384R1())
    point = host.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    assert verify(card) == 0x9000
    shared = result_of(
        general_authenticate(card, ECC_P384, 0x9D, template((0x82, b""), (0x85, point)))
    )
    assert shared == host.exchange(ec.ECDH(), public)


def key_usage(certificate: x509.Certificate) -> x509.KeyUsage:
    return certificate.extensions.get_extension_for_class(x509.KeyUsage).value


def test_key_usage_of_ec_certificates_follows_rfc_5480(ec_card: Path) -> None:
    signing = x509.load_pem_x509_certificate((ec_card / "cert-2.pem").read_bytes())
    assert key_usage(signing).digital_signature
    assert not key_usage(signing).key_agreement
    encryption = key_usage(x509.load_pem_x509_certificate((ec_card / "cert-3.pem").read_bytes()))
    assert encryption.key_agreement
    assert not encryption.digital_signature
    assert not encryption.key_encipherment
    assert not encryption.data_encipherment


def test_the_id_certificate_carries_the_upn_for_smart_card_logon(ec_card: Path) -> None:
    card = opened(ec_card)
    held = certificate_in(get_data(card, CERT_9A))
    names = held.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    (other,) = names.get_values_for_type(x509.OtherName)
    assert other.type_id.dotted_string == "1.3.6.1.4.1.311.20.2.3"
    # [0] EXPLICIT UTF8String inside the otherName: cryptography hands over the UTF8String.
    assert other.value == bytes((0x0C, len(b"user@EXAMPLE.ORG"))) + b"user@EXAMPLE.ORG"
    usages = held.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u.dotted_string for u in usages] == ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]
    assert key_usage(held).digital_signature
    assert key_usage(held).key_encipherment  # RSA: what Windows' smart card logon expects
    assert not key_usage(held).data_encipherment


def test_an_ec_id_certificate_with_a_upn_only_signs(tmp_path: Path) -> None:
    request = CardRequest(
        certificates=1,
        key_size=1024,
        pin_iterations=1,
        applications=Applications.PIV,
        keys={0: KEY_KINDS["p384"]},
        upn="a.b@corp.example",
    )
    directory = tmp_path / "card"
    generate_card(directory, request)
    held = x509.load_pem_x509_certificate((directory / "cert-1.pem").read_bytes())
    assert isinstance(held.public_key(), ec.EllipticCurvePublicKey)
    usage = key_usage(held)
    assert (usage.digital_signature, usage.key_encipherment, usage.key_agreement) == (
        True,
        False,
        False,
    )
    card = opened(directory)
    assert verify(card) == 0x9000
    digest = hashlib.sha256(b"logon").digest()
    signature = result_of(
        general_authenticate(card, ECC_P384, 0x9A, template((0x82, b""), (0x81, digest)))
    )
    public = held.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def test_a_card_with_piv_offers_t1_by_default(ec_card: Path, piv_card: Path) -> None:
    assert CardStore(ec_card).load_profile().atr == Applications.CAC_PIV.default_atr
    assert CardStore(piv_card).load_profile().atr == Applications.PIV.default_atr


# -- what the PIV application changes survives a restart ---------------------------------------


def test_a_generated_key_a_written_object_and_a_wrong_puk_survive_a_restart(
    piv_card: Path,
) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    point = generate(card, 0x9C, ECC_P256)
    certificate = CertificateObject(b"\x30\x03\x02\x01\x07").to_bytes()  # any object content
    assert put_data(card, CERT_9C, certificate) == 0x9000
    wrong_puk = pad("87654321") + pad("24682468")
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, wrong_puk).sw == 0x63C2
    del card

    reopened = opened(piv_card)
    assert decode_one(get_data(reopened, CERT_9C).data, 0x53) == certificate
    assert puk_tries(piv_card) == 2
    assert verify(reopened) == 0x9000
    signature = ecdsa(reopened, 0x9C, ECC_P256, b"after a restart")
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    digest = hashlib.sha256(b"after a restart").digest()
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    # The card counts on from the kept counter.
    assert tx(reopened, 0x00, 0x2C, 0x00, 0x80, wrong_puk).sw == 0x63C1
    assert puk_tries(piv_card) == 1
    # What is kept is listed, each file once.
    document = json.loads((piv_card / PIV_FILE).read_text())
    assert set(document["keys"]) == {"9C"}
    assert set(document["objects"]) == {"5FC10A"}
    names = sorted(p.name for p in piv_card.iterdir() if p.name.startswith("piv-"))
    assert names == sorted([document["keys"]["9C"], document["objects"]["5FC10A"]])


def test_a_key_generated_twice_keeps_the_newer_and_one_file(piv_card: Path) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    generate(card, 0x9E, ECC_P256)
    newer = generate(card, 0x9E, ECC_P384)
    assert [p.name for p in piv_card.iterdir() if p.name.startswith("piv-key-")] == [
        "piv-key-9e.2.pem"
    ]
    reopened = opened(piv_card)
    digest = hashlib.sha384(b"door").digest()
    signature = result_of(
        general_authenticate(reopened, ECC_P384, 0x9E, template((0x82, b""), (0x81, digest)))
    )
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), newer)
    public.verify(signature, digest, ec.ECDSA(utils.Prehashed(hashes.SHA384())))
    assert (piv_card / "piv-key-9e.2.pem").stat().st_mode & 0o077 == 0


def test_a_generated_rsa_key_replaces_the_credentials_for_piv_and_keeps_its_certificate(
    piv_card: Path,
) -> None:
    before = get_data(opened(piv_card), CERT_9A)
    card = opened(piv_card)
    authenticate_management(card)
    modulus = generate(card, 0x9A, RSA_1024)
    reopened = opened(piv_card)
    assert get_data(reopened, CERT_9A) == before  # until PUT DATA replaces it
    assert verify(reopened) == 0x9000
    info = SHA256_DIGEST_INFO + hashlib.sha256(b"new 9A").digest()
    block = b"\x00\x01" + b"\xff" * (128 - 3 - len(info)) + b"\x00" + info
    signature = result_of(
        general_authenticate(reopened, RSA_1024, 0x9A, template((0x82, b""), (0x81, block)))
    )
    public = rsa.RSAPublicNumbers(65537, int.from_bytes(modulus, "big")).public_key()
    public.verify(signature, b"new 9A", padding.PKCS1v15(), hashes.SHA256())


def test_a_deleted_certificate_object_stays_deleted(piv_card: Path) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    assert put_data(card, CERT_9D, b"") == 0x9000
    assert get_data(card, CERT_9D).sw == 0x6A82
    assert get_data(opened(piv_card), CERT_9D).sw == 0x6A82
    assert CardStore(piv_card).load_piv().objects == {ObjectTag.KEY_MANAGEMENT_CERTIFICATE: None}


def test_the_puk_unblocks_a_blocked_pin_and_it_stays_unblocked(piv_card: Path) -> None:
    card = opened(piv_card)
    for left in (2, 1, 0):
        assert verify(card, "00000000") == 0x63C0 | left
    blocked = opened(piv_card)
    assert verify(blocked) == 0x6983
    assert tx(blocked, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("24682468")).sw == 0x9000
    unblocked = opened(piv_card)
    assert verify(unblocked, "24682468") == 0x9000
    assert CardStore(piv_card).load_state().pin.tries_remaining == 3
    assert puk_tries(piv_card) == 3


def test_a_changed_puk_is_kept(piv_card: Path) -> None:
    card = opened(piv_card)
    assert tx(card, 0x00, 0x24, 0x00, 0x81, pad(PUK) + pad("11223344")).sw == 0x9000
    reopened = opened(piv_card)
    assert tx(reopened, 0x00, 0x20, 0x00, 0x80, pad("99999999")).sw == 0x63C2
    assert tx(reopened, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad("123456")).sw == 0x63C2
    assert tx(reopened, 0x00, 0x2C, 0x00, 0x80, pad("11223344") + pad("123456")).sw == 0x9000
    assert verify(opened(piv_card), "123456") == 0x9000


def test_the_chuid_and_ccc_stay_the_same_across_restarts(piv_card: Path) -> None:
    card_id = CardStore(piv_card).load_profile().card_id
    first, second = opened(piv_card), opened(piv_card)
    for tag in (ObjectTag.CHUID, ObjectTag.CARD_CAPABILITY_CONTAINER):
        raw = tag.to_bytes(3, "big")
        assert get_data(first, raw) == get_data(second, raw)
        assert decode_one(get_data(first, raw).data, 0x53) == stable_piv_objects(card_id)[tag]


# -- what cannot be kept is refused: the card answers 6581 and changes nothing -------------------


def test_an_object_larger_than_the_bound_is_refused(piv_card: Path) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    assert put_data(card, CERT_9C, bytes(MAX_PIV_OBJECT + 1)) == 0x6581
    assert not (piv_card / PIV_FILE).exists()
    assert [p.name for p in piv_card.iterdir() if p.name.startswith("piv-")] == []


def test_a_failed_write_refuses_the_change(piv_card: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    before = get_data(card, CERT_9A)

    def full(path: Path, data: bytes, mode: int = 0o600) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("cacard.store.write_atomically", full)
    assert put_data(card, CERT_9A, CertificateObject(b"\x30\x00").to_bytes()) == 0x6581
    assert tx(card, 0x00, 0x47, 0x00, 0x9A, bytes.fromhex("AC03800111")).sw == 0x6581
    assert get_data(card, CERT_9A) == before
    monkeypatch.undo()
    assert get_data(opened(piv_card), CERT_9A) == before


# -- directories made before ---------------------------------------------------------------------


def test_a_card_v2_piv_directory_opens_with_a_puk_that_opens_nothing(tmp_path: Path) -> None:
    directory = copy_of(FIXTURES / "card-v2-piv", tmp_path)
    store = CardStore(directory)
    assert store.load_puk() is None
    card = opened(directory)
    assert verify(card) == 0x9000
    info = SHA256_DIGEST_INFO + hashlib.sha256(b"old card").digest()
    block = b"\x00\x01" + b"\xff" * (128 - 3 - len(info)) + b"\x00" + info
    signature = result_of(
        general_authenticate(card, RSA_1024, 0x9A, template((0x82, b""), (0x81, block)))
    )
    public = x509.load_pem_x509_certificate((directory / "cert-1.pem").read_bytes()).public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"old card", padding.PKCS1v15(), hashes.SHA256())
    assert tx(card, 0x00, 0x2C, 0x00, 0x80, pad(PUK) + pad(PIN)).sw == 0x6983
    # Its ATR stays the one it was made with (T=0 only), and its state keeps no PUK.
    assert store.load_profile().atr == bytes.fromhex("3B7A18000073667465206364313434")
    assert "puk" not in json.loads((directory / STATE_FILE).read_text())


def test_a_card_v2_piv_directory_keeps_what_piv_changes(tmp_path: Path) -> None:
    directory = copy_of(FIXTURES / "card-v2-piv", tmp_path)
    card = opened(directory)
    authenticate_management(card)
    point = generate(card, 0x9D, ECC_P256)
    reopened = opened(directory)
    assert verify(reopened) == 0x9000
    host = ec.generate_private_key(ec.SECP256R1())
    host_point = host.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    shared = result_of(
        general_authenticate(reopened, ECC_P256, 0x9D, template((0x82, b""), (0x85, host_point)))
    )
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    assert shared == host.exchange(ec.ECDH(), public)


def test_the_fixtures_are_unchanged_by_the_tests() -> None:
    for name in ("card-v1", "card-v2-piv"):
        assert not (FIXTURES / name / PIV_FILE).exists()
    assert "puk" not in json.loads((FIXTURES / "card-v2-piv" / STATE_FILE).read_text())


# -- piv.json that cannot be used ------------------------------------------------------------


def kept_document(directory: Path, **changes: object) -> None:
    document: dict[str, object] = {
        "format": "cacard-piv",
        "version": 1,
        "generation": 1,
        "keys": {},
        "objects": {},
    }
    document.update(changes)
    (directory / PIV_FILE).write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("changes", "field", "value"),
    [
        ({"version": 9}, "version", 9),
        ({"generation": -1}, "generation", -1),
        ({"keys": {"9B": "piv-key-9b.1.pem"}}, "keys", "9B"),
        ({"keys": {"9A": "../key-1.pem"}}, "keys.9A", "../key-1.pem"),
        ({"keys": {"9A": "piv-object-5fc105.1.bin"}}, "keys.9A", "piv-object-5fc105.1.bin"),
        ({"generation": True}, "generation", True),
        ({"generation": 10**12}, "generation", 10**12),
        # Another entry's file, or a later change's: the card would overwrite, then remove it.
        ({"keys": {"9A": "piv-key-9c.1.pem"}}, "keys.9A", "piv-key-9c.1.pem"),
        ({"keys": {"9A": "piv-key-9a.2.pem"}}, "keys.9A", "piv-key-9a.2.pem"),
        ({"keys": {"9A": "piv-key-9a.01.pem"}}, "keys.9A", "piv-key-9a.01.pem"),
        (
            {"objects": {"5FC105": "piv-object-5fc10a.1.bin"}},
            "objects.5FC105",
            "piv-object-5fc10a.1.bin",
        ),
        ({"objects": {"5FC1FF": None}}, "objects", "5FC1FF"),
        ({"objects": {"5FC1": None}}, "objects", "5FC1"),
        ({"objects": []}, "objects", []),
    ],
)
def test_a_bad_piv_json_is_refused_naming_the_field(
    piv_card: Path, changes: dict[str, object], field: str, value: object
) -> None:
    kept_document(piv_card, **changes)
    with pytest.raises(StoreError) as caught:
        CardStore(piv_card).open_card()
    assert (caught.value.field, caught.value.value) == (field, value)


def test_an_object_file_larger_than_the_bound_is_refused(piv_card: Path) -> None:
    (piv_card / "piv-object-5fc109.1.bin").write_bytes(bytes(MAX_PIV_OBJECT + 1))
    kept_document(piv_card, objects={"5FC109": "piv-object-5fc109.1.bin"})
    with pytest.raises(StoreError, match="larger than"):
        CardStore(piv_card).open_card()


def test_a_kept_key_piv_cannot_hold_is_refused(piv_card: Path) -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (piv_card / "piv-key-9a.1.pem").write_bytes(pem)
    kept_document(piv_card, keys={"9A": "piv-key-9a.1.pem"})
    with pytest.raises(StoreError) as caught:
        CardStore(piv_card).open_card()
    assert caught.value.path == piv_card / "piv-key-9a.1.pem"


def test_unnamed_piv_files_are_removed_when_the_card_is_taken(piv_card: Path) -> None:
    card = opened(piv_card)
    authenticate_management(card)
    generate(card, 0x9A, ECC_P256)
    (piv_card / "piv-key-9c.7.pem").write_bytes(b"left by a crash")
    (piv_card / "piv-object-5fc105.8.bin").write_bytes(b"left by a crash")
    (piv_card / "piv-notes.txt").write_bytes(b"not the card's")
    with CardStore(piv_card).lock():
        pass
    names = sorted(p.name for p in piv_card.iterdir() if p.name.startswith("piv"))
    assert names == ["piv-key-9a.1.pem", "piv-notes.txt", PIV_FILE]


def test_nothing_is_removed_when_piv_json_cannot_be_read(piv_card: Path) -> None:
    (piv_card / "piv-key-9c.7.pem").write_bytes(b"kept")
    (piv_card / PIV_FILE).write_text("{not json")
    with CardStore(piv_card).lock():
        pass
    assert (piv_card / "piv-key-9c.7.pem").exists()


def test_a_cac_card_keeps_no_piv_state(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    generate_card(directory, CardRequest(certificates=1, key_size=1024, pin_iterations=1))
    assert CardStore(directory).load_puk() is None
    assert tx(CardStore(directory).open_card(), 0x00, 0xA4, 0x04, 0x00, PIV_AID).sw == 0x6A82


def test_keys_are_one_per_reference(piv_card: Path) -> None:
    """Every asymmetric key reference can be kept, and only those (the file count is bounded)."""
    card = opened(piv_card)
    authenticate_management(card)
    assert tx(card, 0x00, 0x47, 0x00, 0x9B, bytes.fromhex("AC03800111")).sw == 0x6A86
    generate(card, KeyReference.RETIRED_KEY_MANAGEMENT_1, ECC_P256)
    assert set(CardStore(piv_card).load_piv().keys) == {KeyReference.RETIRED_KEY_MANAGEMENT_1}


# -- any sequence of changes ---------------------------------------------------------------------

_EC_KEYS = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
_REFERENCES = [KeyReference.PIV_AUTHENTICATION, KeyReference.CARD_AUTHENTICATION]
_TAGS = [ObjectTag.PRINTED_INFORMATION, ObjectTag.CHUID, ObjectTag.KEY_MANAGEMENT_CERTIFICATE]
_CHANGES = st.one_of(
    st.builds(KeyGenerated, st.sampled_from(_REFERENCES), st.sampled_from(_EC_KEYS)),
    st.builds(
        ObjectWritten,
        st.sampled_from(_TAGS),
        st.one_of(st.none(), st.binary(min_size=1, max_size=64)),
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=st.lists(_CHANGES, max_size=12))
def test_piv_json_holds_the_last_change_per_key_and_tag_and_no_other_file(
    tmp_path_factory: pytest.TempPathFactory, changes: list[KeyGenerated | ObjectWritten]
) -> None:
    directory = tmp_path_factory.mktemp("changes") / "card"
    shutil.copytree(FIXTURES / "card-v2-piv", directory)
    store = CardStore(directory)
    keys: dict[KeyReference, ec.EllipticCurvePrivateKey] = {}
    objects: dict[ObjectTag, bytes | None] = {}
    for change in changes:
        store._piv_changed(change)  # the sink the card's PIV application reports to
        if isinstance(change, KeyGenerated):
            assert isinstance(change.private_key, ec.EllipticCurvePrivateKey)
            keys[change.reference] = change.private_key
        else:
            objects[change.tag] = change.content
    kept = CardStore(directory).load_piv()
    assert {ref: _public(key) for ref, key in kept.keys.items()} == {
        ref: _public(key) for ref, key in keys.items()
    }
    assert kept.objects == objects
    files = [p.name for p in directory.iterdir() if p.name.startswith("piv-")]
    assert len(files) == len(keys) + sum(content is not None for content in objects.values())
    CardStore(directory).open_card()  # and the card opens with them


def _public(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
