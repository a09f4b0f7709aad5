"""Card profiles (#15): ``cacard new --profile cac|piv|cac+piv`` makes a card with those
applications over the same keys, and a directory of the card format before profiles opens as
the CAC card it was.

``fixtures/card-v1`` was made by ``generate_card`` before profiles existed (commit 8b8e9f1;
RSA-1024 test keys, PIN 77777777 hashed with one PBKDF2 round).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cacard import CardRequest, generate_card
from cacard.card import Card
from cacard.cli import main
from cacard.piv.ber import decode_fields, decode_one, encode
from cacard.piv.objects import PIV_AID, CertificateObject
from cacard.profile import Applications, ProfileError, cac_applets
from cacard.store import CARD_FILE, STATE_FILE, CardStore, StoreError
from cardfloor.iso7816.apdu import CommandAPDU, Response

from .cards import PIN, PIN_HEX, WRONG_PIN_HEX, hexsw, send

FIXTURE_V1 = Path(__file__).parent / "fixtures" / "card-v1"
#: The first PKI applet's AID (CAC ID certificate).
CAC_PKI_AID = bytes.fromhex("A000000079 0100")
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
RSA_1024 = 0x06
KEY_9A = 0x9A


def tx(card: Card, cla: int, ins: int, p1: int, p2: int, data: bytes = b"") -> Response:
    """One command with Le 256, following ``61xx`` with GET RESPONSE as a T=0 host does."""
    answer = Response.from_bytes(card.transmit(CommandAPDU(cla, ins, p1, p2, data, 256).to_bytes()))
    collected = answer.data
    while answer.sw1 == 0x61:
        answer = Response.from_bytes(card.transmit(bytes((0, 0xC0, 0, 0, answer.sw2))))
        collected += answer.data
    return Response(answer.sw, collected)


def select(card: Card, aid: bytes) -> int:
    return tx(card, 0x00, 0xA4, 0x04, 0x00, aid).sw


def piv_verify(card: Card, pin: str) -> int:
    return tx(card, 0x00, 0x20, 0x00, 0x80, pin.encode().ljust(8, b"\xff")).sw


def sign_9a(card: Card, message: bytes) -> Response:
    info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    block = b"\x00\x01" + b"\xff" * (128 - 3 - len(info)) + b"\x00" + info
    data = encode([(0x7C, encode([(0x82, b""), (0x81, block)]))])
    return tx(card, 0x00, 0x87, RSA_1024, KEY_9A, data)


def certificate(directory: Path, number: int) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / f"cert-{number}.pem").read_bytes())


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> dict[Applications, Path]:
    """One card directory per profile, made as ``cacard new`` makes them."""
    made = {}
    for applications in Applications:
        directory = tmp_path_factory.mktemp("profiles") / applications.value
        request = CardRequest(key_size=1024, pin_iterations=1, applications=applications)
        generate_card(directory, request)
        made[applications] = directory
    return made


@pytest.mark.parametrize(
    ("applications", "cac", "piv"),
    [
        (Applications.CAC, True, False),
        (Applications.PIV, False, True),
        (Applications.CAC_PIV, True, True),
    ],
)
def test_each_profile_answers_select_of_its_applications_only(
    cards: dict[Applications, Path], applications: Applications, cac: bool, piv: bool
) -> None:
    card = CardStore(cards[applications]).open_card()
    assert select(card, CAC_PKI_AID) == (0x9000 if cac else 0x6A82)
    assert select(card, PIV_AID) == (0x9000 if piv else 0x6A82)
    # Hosts select PIV by a right-truncated AID too (OpenSC's piv_find_aid does).
    assert select(card, PIV_AID[:9]) == (0x9000 if piv else 0x6A82)


def test_card_json_records_the_profile_in_version_2_and_a_cac_card_stays_version_1(
    cards: dict[Applications, Path],
) -> None:
    documents = {a: json.loads((d / CARD_FILE).read_text()) for a, d in cards.items()}
    assert documents[Applications.CAC]["version"] == 1
    assert "profile" not in documents[Applications.CAC]
    piv = documents[Applications.PIV]
    assert (piv["version"], piv["profile"]) == (2, "piv")
    assert documents[Applications.CAC_PIV]["profile"] == "cac+piv"
    assert CardStore(cards[Applications.CAC_PIV]).load_profile().applications is (
        Applications.CAC_PIV
    )


def test_a_piv_card_signs_with_9a_only_after_verify_with_the_card_pin(
    cards: dict[Applications, Path],
) -> None:
    directory = cards[Applications.PIV]
    card = CardStore(directory).open_card()
    assert select(card, PIV_AID) == 0x9000
    assert sign_9a(card, b"hello").sw == 0x6982
    assert piv_verify(card, PIN) == 0x9000
    answer = sign_9a(card, b"hello")
    assert answer.sw == 0x9000
    signature = decode_fields(decode_one(answer.data, 0x7C), where="test")[0x82]
    public = certificate(directory, 1).public_key()  # the ID certificate is 9A's
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())


def test_cac_and_piv_share_the_certificates_9a_9c_9d(cards: dict[Applications, Path]) -> None:
    directory = cards[Applications.CAC_PIV]
    card = CardStore(directory).open_card()
    assert select(card, PIV_AID) == 0x9000
    for number, tag in enumerate(("5FC105", "5FC10A", "5FC10B"), start=1):
        answer = tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C03" + tag))
        assert answer.sw == 0x9000
        held = CertificateObject.from_bytes(decode_one(answer.data, 0x53)).certificate
        assert held == certificate(directory, number).public_bytes(serialization.Encoding.DER)
    # No fourth credential, and nothing generated: card authentication (9E) is absent.
    assert tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C035FC101")).sw == 0x6A82


def copy_card(cards: dict[Applications, Path], applications: Applications, tmp: Path) -> Path:
    directory = tmp / "card"
    shutil.copytree(cards[applications], directory)
    return directory


def piv_status(card: Card) -> int:
    """VERIFY 80 without data: the tries left (``63Cx``), or ``9000`` when verified."""
    return tx(card, 0x00, 0x20, 0x00, 0x80).sw


def test_a_wrong_piv_pin_spends_a_try_of_the_card_pin_that_survives_a_restart(
    tmp_path: Path, cards: dict[Applications, Path]
) -> None:
    directory = copy_card(cards, Applications.PIV, tmp_path)
    card = CardStore(directory).open_card()
    select(card, PIV_AID)
    assert piv_verify(card, "12345678") == 0x63C2
    reopened = CardStore(directory).open_card()
    select(reopened, PIV_AID)
    assert piv_status(reopened) == 0x63C2
    assert hexsw(send(reopened, "00 20 00 00")) == "63C2"  # one counter for 00 and 80
    assert piv_verify(reopened, PIN) == 0x9000
    assert CardStore(directory).load_state().pin.tries_remaining == 3
    refilled = CardStore(directory).open_card()
    select(refilled, PIV_AID)
    assert piv_status(refilled) == 0x63C3


def test_a_piv_pin_blocked_through_the_cac_is_blocked_for_piv_until_the_puk_unblocks_it(
    tmp_path: Path, cards: dict[Applications, Path]
) -> None:
    directory = copy_card(cards, Applications.CAC_PIV, tmp_path)
    card = CardStore(directory).open_card()
    for _ in range(3):
        send(card, "00 20 00 00 08 " + WRONG_PIN_HEX)
    reopened = CardStore(directory).open_card()
    select(reopened, PIV_AID)
    assert piv_verify(reopened, PIN) == 0x6983
    # RESET RETRY COUNTER with the card's PUK (cacard new's default) unblocks it, persisted.
    new_pin = "13572468"
    assert tx(reopened, 0x00, 0x2C, 0x00, 0x80, b"87654321" + new_pin.encode()).sw == 0x63C2
    assert tx(reopened, 0x00, 0x2C, 0x00, 0x80, b"12345678" + new_pin.encode()).sw == 0x9000
    unblocked = CardStore(directory).open_card()
    select(unblocked, CAC_PKI_AID)
    assert hexsw(send(unblocked, "00 20 00 00 08 " + new_pin.encode().hex())) == "9000"
    assert CardStore(directory).load_state().pin.tries_remaining == 3
    puk = CardStore(directory).load_puk()
    assert puk is not None
    assert puk.tries_remaining == 3  # the right PUK refilled its own counter


def test_change_reference_data_80_changes_the_card_pin_and_persists(
    tmp_path: Path, cards: dict[Applications, Path]
) -> None:
    directory = copy_card(cards, Applications.CAC_PIV, tmp_path)
    card = CardStore(directory).open_card()
    select(card, PIV_AID)
    new_pin = "24681357"
    assert tx(card, 0x00, 0x24, 0x00, 0x80, PIN.encode() + new_pin.encode()).sw == 0x9000
    reopened = CardStore(directory).open_card()
    select(reopened, PIV_AID)
    assert piv_verify(reopened, PIN) == 0x63C2
    assert piv_verify(reopened, new_pin) == 0x9000
    select(reopened, CAC_PKI_AID)
    assert hexsw(send(reopened, "00 20 00 00 08 " + new_pin.encode().hex())) == "9000"


def test_a_pin_verified_through_the_cac_opens_piv_keys_and_the_reverse(
    cards: dict[Applications, Path],
) -> None:
    card = CardStore(cards[Applications.CAC_PIV]).open_card()
    select(card, CAC_PKI_AID)
    assert hexsw(send(card, "00 20 00 00 08 " + PIN_HEX)) == "9000"
    select(card, PIV_AID)
    assert piv_status(card) == 0x9000
    assert sign_9a(card, b"hello").sw == 0x9000  # no VERIFY 80
    card.reset()
    select(card, PIV_AID)
    assert sign_9a(card, b"hello").sw == 0x6982
    assert piv_verify(card, PIN) == 0x9000
    assert card.pin_verified  # what the CAC's PKI applets ask


def test_the_discovery_object_says_either_pin_opens_piv_and_80_is_primary(
    cards: dict[Applications, Path],
) -> None:
    card = CardStore(cards[Applications.PIV]).open_card()
    select(card, PIV_AID)
    answer = tx(card, 0x00, 0xCB, 0x3F, 0xFF, bytes.fromhex("5C017E"))
    assert answer.sw == 0x9000
    assert answer.data.endswith(bytes.fromhex("5F2F026010"))


def test_a_card_directory_from_before_profiles_opens_as_the_cac_card_it_was(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "card"
    shutil.copytree(FIXTURE_V1, directory)
    card_json = (directory / CARD_FILE).read_bytes()
    store = CardStore(directory)
    profile = store.load_profile()
    assert profile.applications is Applications.CAC
    card = store.open_card()
    assert set(card.applets) == {applet.aid for applet in cac_applets(profile)}
    assert select(card, CAC_PKI_AID) == 0x9000
    assert select(card, PIV_AID) == 0x6A82
    assert hexsw(send(card, "00 20 00 00 08 " + PIN_HEX)) == "9000"
    assert (directory / CARD_FILE).read_bytes() == card_json  # opened, not rewritten
    assert json.loads((directory / STATE_FILE).read_text())["version"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": 1, "profile": "piv"}, "profile"),
        ({"version": 2, "profile": "cac-only"}, "profile"),
        ({"version": 2}, "profile"),
        ({"version": 3, "profile": "piv"}, "version"),
    ],
)
def test_a_bad_profile_or_version_names_the_field(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    directory = tmp_path / "card"
    shutil.copytree(FIXTURE_V1, directory)
    document = json.loads((directory / CARD_FILE).read_text()) | change
    (directory / CARD_FILE).write_text(json.dumps(document))
    with pytest.raises(StoreError) as caught:
        CardStore(directory).open_card()
    assert caught.value.field == field


def test_a_piv_card_holds_four_certificates_and_a_pin_piv_can_verify() -> None:
    with pytest.raises(ProfileError) as caught:
        CardRequest(certificates=5, applications=Applications.PIV)
    assert (caught.value.field, caught.value.value) == ("certificates", 5)
    with pytest.raises(ProfileError) as caught:
        CardRequest(pin="1234", applications=Applications.CAC_PIV)
    assert caught.value.field == "pin"
    CardRequest(certificates=4, pin="1234", applications=Applications.CAC, key_size=1024)


def test_cacard_new_takes_a_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "card"
    assert main(["new", str(directory), "--profile", "cac+piv", "--key-size", "1024"]) == 0
    assert "(cac+piv, PIN 77777777, PUK 12345678)" in capsys.readouterr().out
    card = CardStore(directory).open_card()
    assert select(card, PIV_AID) == select(card, CAC_PKI_AID) == 0x9000
    assert main(["new", str(tmp_path / "short"), "--profile", "piv", "--pin", "1234"]) == 1
    assert "pin" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["new", str(tmp_path / "other"), "--profile", "gids"])
