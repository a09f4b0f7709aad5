"""What backs a served card: a card directory, an NSS database, a PKCS#11 token; the card PIN
each gives and where its retry counter lives."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cacard.atr import CAC_ATR, CAC_ATR_T1
from cacard.backends import (
    BackendError,
    CardDirectory,
    NssDatabase,
    Pkcs11Token,
    open_backend,
)
from cacard.card import Card
from cacard.generate import CardRequest, generate_card
from cacard.pin import PinFormatError
from cacard.profile import Applications
from cacard.store import CardStore
from cardfloor.iso7816.apdu import Response

from .cards import hexsw, send

PIN = "77777777"
DB_PASSWORD = "13572468"
MESSAGE = b"sign me\n"
DIGEST_INFO_SHA256 = "3031300d060960864801650304020105000420"

needs_nss = pytest.mark.skipif(
    shutil.which("certutil") is None or shutil.which("pk12util") is None,
    reason="NSS tools are not installed (apt-get install libnss3-tools)",
)


def verify(card: Card, pin: str) -> str:
    """VERIFY ``pin`` (padded with FF as OpenSC sends it); the status word."""
    data = pin.encode().ljust(8, b"\xff").hex()
    return hexsw(send(card, f"00 20 00 00 08 {data}"))


def pin_status(card: Card) -> str:
    return hexsw(send(card, "00 20 00 00"))


def sign_block(card: Card, applet: int, block: bytes) -> Response:
    """Select PKI applet ``applet`` and send a 256-byte block as OpenSC does: two chained parts."""
    assert hexsw(send(card, f"00 A4 04 0C 07 A0 00 00 00 79 01 {applet:02X}")) == "9000"
    assert hexsw(send(card, f"00 42 80 00 80 {block[:128].hex()}")) == "9000"
    answer = send(card, f"00 42 00 00 80 {block[128:].hex()} 00")
    if answer.sw >> 8 != 0x61:
        return answer
    rest = send(card, f"00 C0 00 00 {answer.sw & 0xFF:02X}")
    return Response(rest.sw, answer.data + rest.data)


def signature_block() -> bytes:
    """MESSAGE's SHA-256 PKCS#1 v1.5 signature block for a 2048-bit key."""
    payload = bytes.fromhex(DIGEST_INFO_SHA256) + hashlib.sha256(MESSAGE).digest()
    return b"\x00\x01" + b"\xff" * (256 - 3 - len(payload)) + b"\x00" + payload


def sign_sha256(card: Card, applet: int) -> bytes:
    answer = sign_block(card, applet, signature_block())
    assert answer.sw == 0x9000
    return answer.data


# -- a card directory ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("directory") / "card"
    generate_card(path, CardRequest(certificates=1, key_size=1024, pin_iterations=1))
    return path


def test_a_card_directory_is_held_while_its_card_is_open(directory: Path) -> None:
    with open_backend(CardDirectory(directory)) as card:
        assert card.atr == CAC_ATR
        with pytest.raises(BackendError, match="another process is serving"):
            open_backend(CardDirectory(directory)).__enter__()
    with open_backend(CardDirectory(directory)):
        pass  # released


def test_a_card_directory_keeps_its_counter_in_state_json(directory: Path) -> None:
    with open_backend(CardDirectory(directory)) as card:
        assert verify(card, "11111111") == "63C2"
        assert CardStore(directory).load_state().pin.tries_remaining == 2
        assert verify(card, PIN) == "9000"
    assert CardStore(directory).load_state().pin.tries_remaining == 3


@pytest.mark.parametrize("name", ["absent", "empty"])
def test_what_is_not_a_card_directory_is_an_error(tmp_path: Path, name: str) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackendError, match="not a card directory"):
        open_backend(CardDirectory(tmp_path / name)).__enter__()


def test_an_error_inside_the_block_passes_through_unchanged(directory: Path) -> None:
    with pytest.raises(OSError, match="vpcd went away"), open_backend(CardDirectory(directory)):
        raise OSError("vpcd went away")


# -- an NSS database ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nss_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


def make_db(directory: Path, password: str, key: rsa.RSAPrivateKey) -> str:
    from .nssdb import import_key, nss_db

    directory.mkdir()
    db = nss_db(directory / "db", password)
    import_key(db, password, "cert1", key, directory)
    return db


@pytest.fixture(scope="module")
def protected_db(tmp_path_factory: pytest.TempPathFactory, nss_key: rsa.RSAPrivateKey) -> str:
    return make_db(tmp_path_factory.mktemp("nss") / "protected", DB_PASSWORD, nss_key)


@pytest.fixture(scope="module")
def open_db(tmp_path_factory: pytest.TempPathFactory, nss_key: rsa.RSAPrivateKey) -> str:
    return make_db(tmp_path_factory.mktemp("nss") / "open", "", nss_key)


@pytest.mark.interop
@needs_nss
def test_the_pin_of_an_nss_card_is_the_database_password(
    protected_db: str, nss_key: rsa.RSAPrivateKey
) -> None:
    with open_backend(NssDatabase(protected_db, ("cert1",), DB_PASSWORD)) as card:
        assert verify(card, PIN) == "63C2"
        assert verify(card, DB_PASSWORD) == "9000"
        signature = sign_sha256(card, 0)
    nss_key.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.interop
@needs_nss
def test_a_database_without_password_gives_77777777_or_the_pin_given(open_db: str) -> None:
    with open_backend(NssDatabase(open_db, ("cert1",))) as card:
        assert verify(card, PIN) == "9000"
    with open_backend(NssDatabase(open_db, ("cert1",), pin="2468")) as card:
        assert verify(card, PIN) == "63C2"
        assert verify(card, "2468") == "9000"


@pytest.mark.interop
@needs_nss
def test_a_pin_given_replaces_the_database_password(protected_db: str) -> None:
    with open_backend(NssDatabase(protected_db, ("cert1",), DB_PASSWORD, pin="2468")) as card:
        assert verify(card, DB_PASSWORD) == "63C2"
        assert verify(card, "2468") == "9000"


@pytest.mark.interop
@needs_nss
def test_a_password_that_cannot_be_a_cac_pin_needs_a_pin_given(
    tmp_path: Path, nss_key: rsa.RSAPrivateKey
) -> None:
    db = make_db(tmp_path / "words", "db password 1", nss_key)
    with pytest.raises(BackendError, match="database password cannot be the card PIN"):
        open_backend(NssDatabase(db, ("cert1",), "db password 1")).__enter__()
    with open_backend(NssDatabase(db, ("cert1",), "db password 1", pin="1234")) as card:
        assert verify(card, "1234") == "9000"


@pytest.mark.interop
@needs_nss
def test_the_counter_of_an_nss_card_lives_in_memory(protected_db: str) -> None:
    backend = NssDatabase(protected_db, ("cert1",), DB_PASSWORD, max_tries=1)
    with open_backend(backend) as card:
        assert verify(card, PIN) == "63C0"
        assert verify(card, DB_PASSWORD) == "6983"  # blocked while served
    with open_backend(backend) as card:  # a restart is the administrator's unblock
        assert pin_status(card) == "63C1"


@pytest.mark.interop
@needs_nss
def test_the_atr_of_an_nss_card_is_chosen(protected_db: str) -> None:
    with open_backend(NssDatabase(protected_db, ("cert1",), DB_PASSWORD, atr=CAC_ATR_T1)) as c:
        assert c.atr == CAC_ATR_T1


@pytest.mark.interop
@needs_nss
@pytest.mark.parametrize(
    ("nicknames", "password", "match"),
    [
        (("cert1",), "00000000", "wrong password"),
        (("cert1",), None, "has a password"),
        (("nope",), DB_PASSWORD, "no certificate with nickname 'nope'"),
    ],
)
def test_an_nss_database_that_gives_no_card_is_an_error(
    protected_db: str, nicknames: tuple[str, ...], password: str | None, match: str
) -> None:
    with pytest.raises(BackendError, match=match):
        open_backend(NssDatabase(protected_db, nicknames, password)).__enter__()


def test_descriptions_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="at least one certificate nickname"):
        NssDatabase("sql:/nowhere", ())
    with pytest.raises(PinFormatError):
        NssDatabase("sql:/nowhere", ("cert1",), pin="12")
    with pytest.raises(PinFormatError):
        Pkcs11Token("/nowhere.so", pin="abcd")
    with pytest.raises(ValueError, match="1 to 15 tries"):
        Pkcs11Token("/nowhere.so", max_tries=16)


def test_secrets_stay_out_of_reprs() -> None:
    text = repr(NssDatabase("sql:/db", ("cert1",), "s3cret", pin="97531"))
    text += repr(Pkcs11Token("/m.so", token_pin="86420", pin="97531"))
    assert "s3cret" not in text
    assert "86420" not in text
    assert "97531" not in text


# -- a PKCS#11 token ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, rsa.RSAPrivateKey]]:
    pytest.importorskip("pkcs11", reason="python-pkcs11 (the 'pkcs11' extra) is not installed")
    from .softhsm import LABEL, PIN, import_rsa_key, softhsm, softhsm_missing

    if softhsm_missing():
        pytest.skip("SoftHSM2 is not installed (apt-get install softhsm2)")
    import pkcs11

    saved = os.environ.get("SOFTHSM2_CONF")
    module = softhsm(tmp_path_factory.mktemp("softhsm"))
    key = rsa.generate_private_key(65537, 2048)
    with pkcs11.lib(str(module)).get_token(token_label=LABEL).open(rw=True, user_pin=PIN) as s:
        import_rsa_key(s, key, b"\x01", "cert1")
    yield module, key
    if saved is None:
        os.environ.pop("SOFTHSM2_CONF", None)
    else:
        os.environ["SOFTHSM2_CONF"] = saved


TOKEN_PIN = "77777777"  # tests.cacard.softhsm.PIN


@pytest.mark.interop
def test_the_pin_of_a_token_card_is_the_token_pin_and_the_key_stays_there(
    token: tuple[Path, rsa.RSAPrivateKey],
) -> None:
    module, key = token
    with open_backend(Pkcs11Token(str(module), token_pin=TOKEN_PIN)) as card:
        assert verify(card, "24682468") == "63C2"
        assert verify(card, TOKEN_PIN) == "9000"
        signature = sign_sha256(card, 0)
        key.public_key().verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    # The token's session is closed with the block: the card's key no longer works.
    assert verify(card, TOKEN_PIN) == "9000"
    assert hexsw(sign_block(card, 0, signature_block())) == "6F00"


@pytest.mark.interop
def test_a_pin_given_replaces_the_token_pin(token: tuple[Path, rsa.RSAPrivateKey]) -> None:
    module, _ = token
    with open_backend(Pkcs11Token(str(module), token_pin=TOKEN_PIN, pin="8642")) as card:
        assert verify(card, TOKEN_PIN) == "63C2"
        assert verify(card, "8642") == "9000"


@pytest.mark.interop
@pytest.mark.parametrize(
    ("backend", "match"),
    [
        ({"token_pin": "00000000"}, "PinIncorrect"),
        ({"token_pin": None}, "needs a PIN"),
        ({"token_pin": TOKEN_PIN, "token_label": "other"}, "no initialised token labelled"),
        ({"token_pin": TOKEN_PIN, "labels": ("nope",)}, "no certificate labelled"),
    ],
)
def test_a_token_that_gives_no_card_is_an_error(
    token: tuple[Path, rsa.RSAPrivateKey], backend: dict[str, object], match: str
) -> None:
    module, _ = token
    with pytest.raises(BackendError, match=match):
        open_backend(Pkcs11Token(str(module), **backend)).__enter__()  # type: ignore[arg-type]


def test_a_missing_module_is_an_error(tmp_path: Path) -> None:
    pytest.importorskip("pkcs11", reason="python-pkcs11 (the 'pkcs11' extra) is not installed")
    with pytest.raises(BackendError, match="cannot load PKCS#11 module"):
        open_backend(Pkcs11Token(str(tmp_path / "absent.so"), token_pin=TOKEN_PIN)).__enter__()


def test_a_puk_is_eight_digits_on_a_card_with_piv() -> None:
    with pytest.raises(ValueError, match="a PUK needs a card with PIV"):
        NssDatabase("sql:/nowhere", ("cert1",), puk="12345678")
    with pytest.raises(PinFormatError, match="a PUK has 8 digits"):
        Pkcs11Token("/m.so", applications=Applications.PIV, puk="1234567")
    with pytest.raises(PinFormatError):
        Pkcs11Token("/m.so", applications=Applications.PIV, puk="1234567a")
    backend = NssDatabase("sql:/db", ("c",), applications=Applications.CAC_PIV, puk="24681357")
    assert "24681357" not in repr(backend)
    assert backend.atr is None


def test_a_card_with_piv_takes_no_pin_piv_cannot_verify() -> None:
    # PIV's VERIFY takes 6 to 8 digits: a shorter card PIN would leave PIV locked for good.
    with pytest.raises(ValueError, match="a card with PIV needs a PIN of 6 to 8 digits"):
        NssDatabase("sql:/db", ("c",), applications=Applications.CAC_PIV, pin="1234")
    assert Pkcs11Token("/m.so", applications=Applications.CAC, pin="1234").pin == "1234"
