"""The ``cacard`` command on cards with PIV (#15): ``new --key/--upn/--puk``, ``import
--profile/--puk``, ``info``, ``unblock --puk``, ``serve-vpcd --profile/--puk``, and their errors
(a value no card can have: exit 2 from argparse; options that do not fit together: exit 1)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cacard.atr import CAC_ATR, CAC_ATR_T1, PIV_ATR
from cacard.backends import NssDatabase, Pkcs11Token
from cacard.card import Card
from cacard.cli import _backend, _parser, main
from cacard.keys import key_description
from cacard.piv.objects import PIV_AID
from cacard.profile import Applications
from cacard.store import CardStore
from cardfloor.iso7816.apdu import CommandAPDU, Response

from .cards import private_key
from .certificates import issue

FIXTURES = Path(__file__).parent / "fixtures"
FAST = ["--key-size", "1024"]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures structlog for a process; give the other tests theirs back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def kinds(directory: Path) -> list[str]:
    return [key_description(c.key) for c in CardStore(directory).load_profile().credentials]


def tx(card: Card, apdu: CommandAPDU) -> int:
    return Response.from_bytes(card.transmit(apdu.to_bytes())).sw


def reset_retry_counter(directory: Path, puk: str, new_pin: str) -> int:
    card = CardStore(directory).open_card()
    assert tx(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, PIV_AID, 256)) == 0x9000
    data = puk.encode().ljust(8, b"\xff") + new_pin.encode().ljust(8, b"\xff")
    return tx(card, CommandAPDU(0x00, 0x2C, 0x00, 0x80, data))


# -- cacard new --key ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        # A card with PIV has four certificates by default: 9A, 9C, 9D, 9E.
        (["p256"], ["P-256", "P-256", "P-256", "P-256"]),
        (["P384", "2=p256"], ["P-384", "P-256", "P-384", "P-384"]),
        (["2=p256", "p384"], ["P-384", "P-384", "P-384", "P-384"]),  # a bare kind sets all
        (["9c=p256", "9C=p384"], ["RSA-1024", "P-384", "RSA-1024", "RSA-1024"]),  # later wins
        (["9a=p256", "3=p384", "9e=p256"], ["P-256", "RSA-1024", "P-384", "P-256"]),
    ],
)
def test_key_kinds_per_slot_on_a_piv_card(
    tmp_path: Path, keys: list[str], expected: list[str]
) -> None:
    argv = ["new", str(tmp_path / "card"), "--profile", "piv", *FAST]
    for key in keys:
        argv += ["--key", key]
    assert main(argv) == 0
    assert kinds(tmp_path / "card") == expected


def test_key_size_is_rsa_bits_for_the_slots_key_leaves(tmp_path: Path) -> None:
    argv = ["new", str(tmp_path / "card"), "--certs", "2", *FAST, "--key", "2=rsa2048"]
    assert main(argv) == 0
    assert kinds(tmp_path / "card") == ["RSA-1024", "RSA-2048"]


def test_info_shows_key_kinds_and_piv_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["new", str(tmp_path / "card"), "--profile", "cac+piv", *FAST, "--key", "9d=p384"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "profile    cac+piv" in out
    assert "PKI 0      key 00:01 'CAC ID Certificate', RSA-1024, PIV 9A" in out
    assert "PKI 1      key 00:02 'CAC Email Signature Certificate', RSA-1024, PIV 9C" in out
    # An EC key is PIV's only: OpenSC's CAC driver is RSA-only.
    assert "PIV 9D     'Certificate for Key Management', P-384" in out
    assert "key_agreement" in out
    assert "PUK        3 of 3 tries left" in out
    assert "3B FA 18 00 00 80 31 FE 45" in out  # the cac+piv default ATR offers T=1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--profile", "cac", "--key", "9c=p256"], "PIV key names need a card with PIV"),
        (["--profile", "cac", "--key", "2=p256"], "OpenSC's CAC driver is RSA-only"),
        (["--key", "p256"], "needs an RSA certificate"),
        (["--profile", "cac", "--key", "p256"], "OpenSC's CAC driver is RSA-only"),
        (["--key", "5=rsa2048"], "the card has 4 certificates (--certs): key=5=rsa2048"),
        (
            ["--profile", "cac", "--key", "4=rsa2048"],
            "the card has 3 certificates (--certs): key=4=rsa2048",
        ),
        (["--profile", "cac+piv", "--key", "p256"], "needs an RSA certificate"),
        (
            ["--profile", "cac+piv", "--certs", "5", "--key", "5=p256"],
            "EC keys are for the PIV keys, certificates 1-4: key 5=p256",
        ),
        (["--profile", "cac", "--puk", "12345678"], "a PUK needs a card with PIV"),
    ],
)
def test_options_that_do_not_fit_the_card_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["new", str(tmp_path / "card"), *FAST, *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cacard: ")
    assert message in err
    assert not (tmp_path / "card").exists()


def test_the_ec_refusal_names_the_slot_and_the_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["new", str(tmp_path / "card"), *FAST, "--profile", "cac", "--key", "3=P384"]
    assert main(argv) == 1
    assert "key 3=p384" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--key", "rsa1000"], "a key kind is one of rsa2048, rsa3072, rsa4096, p256, p384"),
        (["--key", "9a=ed25519"], "key=9a=ed25519"),
        (["--key", "11=p256"], "a slot is a certificate number 1-10 or a PIV key"),
        (["--key", "9b=p256"], "key=9b=p256"),
        (["--key", "0=p256"], "key=0=p256"),
        (["--upn", "user"], "upn=user"),
        (["--upn", "@EXAMPLE.ORG"], "upn=@EXAMPLE.ORG"),
        (["--upn", "user@"], "a UPN is NAME@REALM"),
        (["--upn", "a@b@c"], "upn=a@b@c"),
        (["--upn", "us er@EXAMPLE.ORG"], "no spaces"),
        (["--puk", "1234"], "a PUK has 8 digits: pin length=4"),
        (["--puk", "123456789"], "a PUK has 8 digits"),
        (["--puk", "1234567a"], "a PUK has 8 digits"),
    ],
)
def test_values_no_card_can_have_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["new", str(tmp_path / "card"), "--profile", "piv", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert argv[0] in err  # argparse names the option
    assert not (tmp_path / "card").exists()


def test_help_names_the_kinds_the_key_size_alias_and_the_default_puk(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["new", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "rsa2048, rsa3072, rsa4096, p256, p384" in out
    assert "--key rsaBITS for all" in out
    assert "default 12345678" in out
    assert "change it for real use" in out


# -- --upn and --puk -----------------------------------------------------------------------------


def test_upn_goes_on_the_id_certificate_only(tmp_path: Path) -> None:
    argv = ["new", str(tmp_path / "card"), *FAST, "--profile", "piv", "--upn", "jo@AD.TEST"]
    assert main(argv) == 0
    for number, has_upn in ((1, True), (2, False), (3, False)):
        held = x509.load_pem_x509_certificate(
            (tmp_path / "card" / f"cert-{number}.pem").read_bytes()
        )
        try:
            names = held.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            names = None
        assert (names is not None) == has_upn
        if names is not None:
            (upn,) = names.get_values_for_type(x509.OtherName)
            assert upn.value.endswith(b"jo@AD.TEST")


def test_a_puk_given_is_the_cards(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tmp_path / "card"
    argv = ["new", str(directory), *FAST, "--profile", "piv", "--puk", "87654321"]
    assert main(argv) == 0
    assert "PUK 87654321" in capsys.readouterr().out
    assert reset_retry_counter(directory, "12345678", "246802") == 0x63C2
    assert reset_retry_counter(directory, "87654321", "246802") == 0x9000


def test_atr_given_wins_over_the_profiles(tmp_path: Path) -> None:
    assert main(["new", str(tmp_path / "a"), *FAST, "--profile", "piv", "--atr", "cac-t1"]) == 0
    assert CardStore(tmp_path / "a").load_profile().atr == CAC_ATR_T1
    assert main(["new", str(tmp_path / "b"), *FAST, "--profile", "piv", "--certs", "1"]) == 0
    assert CardStore(tmp_path / "b").load_profile().atr == PIV_ATR
    assert main(["new", str(tmp_path / "c"), *FAST, "--profile", "cac", "--certs", "1"]) == 0
    assert CardStore(tmp_path / "c").load_profile().atr == CAC_ATR
    # cac+piv, the command's default, offers T=1 with the CAC ATR's bytes.
    assert main(["new", str(tmp_path / "d"), *FAST, "--certs", "1"]) == 0
    assert CardStore(tmp_path / "d").load_profile().atr == CAC_ATR_T1


# -- cacard import -------------------------------------------------------------------------------


def write_pair(
    tmp_path: Path, name: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
) -> list[str]:
    cert, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert.write_bytes(issue(key.public_key(), name).public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ["--cert", str(cert), "--key", str(key_file)]


def test_import_an_ec_key_onto_a_piv_card(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "card"
    pair = write_pair(tmp_path, "ec", ec.generate_private_key(ec.SECP256R1()))
    argv = ["import", str(directory), *pair, "--profile", "piv", "--puk", "11112222"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "made card" in out
    assert "(piv)" in out
    assert "PIV 9A     'Certificate for PIV Authentication', P-256" in out
    profile = CardStore(directory).load_profile()
    assert (profile.applications, profile.atr) == (Applications.PIV, PIV_ATR)
    assert reset_retry_counter(directory, "11112222", "135790") == 0x9000


def test_import_onto_a_cac_piv_card_gets_the_default_puk(tmp_path: Path) -> None:
    directory = tmp_path / "card"
    pair = write_pair(tmp_path, "rsa", private_key(0))
    assert main(["import", str(directory), *pair, "--profile", "cac+piv"]) == 0
    assert CardStore(directory).load_profile().atr == CAC_ATR_T1
    assert reset_retry_counter(directory, "12345678", "135790") == 0x9000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--profile", "cac"], "OpenSC's CAC driver handles RSA only"),
        ([], "a CAC application needs at least one RSA credential"),
        (["--profile", "cac+piv"], "a CAC application needs at least one RSA credential"),
        (
            ["--profile", "cac", "--puk", "12345678"],
            "a PUK needs a card with PIV (--profile piv or cac+piv): profile=cac",
        ),
        (["--profile", "piv", "--pin", "1234"], "a card with PIV needs a PIN of 6 to 8 digits"),
    ],
)
def test_import_refusals_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    pair = write_pair(tmp_path, "ec", ec.generate_private_key(ec.SECP384R1()))
    assert main(["import", str(tmp_path / "card"), *pair, *extra]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "card").exists()


# -- cacard info, unblock ------------------------------------------------------------------------


def test_info_of_a_directory_made_before_puks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "card"
    shutil.copytree(FIXTURES / "card-v2-piv", directory)
    assert main(["info", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "profile    cac+piv" in out
    assert "PUK        none: no value opens it (cacard unblock --puk sets one)" in out
    assert "(T=0)" in out
    assert "RSA-1024, PIV 9D" in out


def test_info_of_a_cac_card_made_before_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(FIXTURES / "card-v1")]) == 0
    out = capsys.readouterr().out
    assert "profile    cac" in out
    assert "PUK" not in out
    assert "PIV" not in out


def test_info_shows_what_piv_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from .test_piv_store import authenticate_management, generate, opened, put_data

    directory = tmp_path / "card"
    assert main(["new", str(directory), *FAST, "--profile", "piv"]) == 0
    card = opened(directory)
    authenticate_management(card)
    generate(card, 0x9C, 0x11)
    assert put_data(card, bytes.fromhex("5FC109"), bytes.fromhex("0103414243")) == 0x9000
    assert put_data(card, bytes.fromhex("5FC10B"), b"") == 0x9000
    capsys.readouterr()
    assert main(["info", str(directory)]) == 0
    out = capsys.readouterr().out
    assert "PIV kept   key 9C: P-256, made by GENERATE (PIV only)" in out
    assert "PIV kept   object 5FC109 (printed information): 5 bytes, by PUT DATA" in out
    assert "PIV kept   object 5FC10B (key management certificate): deleted, by PUT DATA" in out


def test_unblock_refills_the_puk_and_can_set_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "card"
    shutil.copytree(FIXTURES / "card-v2-piv", directory)
    assert main(["unblock", str(directory), "--puk", "24681357"]) == 0
    assert "PIN unblocked, new PUK set" in capsys.readouterr().out
    assert reset_retry_counter(directory, "24681357", "77777777") == 0x9000
    for _ in range(3):
        reset_retry_counter(directory, "00000000", "77777777")
    puk = CardStore(directory).load_puk()
    assert puk is not None
    assert puk.blocked
    assert main(["unblock", str(directory)]) == 0
    assert "PIN unblocked, PUK tries refilled" in capsys.readouterr().out
    assert reset_retry_counter(directory, "24681357", "77777777") == 0x9000


@pytest.mark.parametrize(
    ("fixture", "argv", "code", "message"),
    [
        ("card-v1", ["--puk", "12345678"], 1, "a PUK needs a card with PIV: profile=cac"),
        ("card-v2-piv", ["--pin", "1234"], 1, "a card with PIV needs a PIN of 6 to 8 digits"),
        ("card-v2-piv", ["--puk", "1234"], 2, "a PUK has 8 digits"),
    ],
)
def test_unblock_refusals(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fixture: str,
    argv: list[str],
    code: int,
    message: str,
) -> None:
    directory = tmp_path / "card"
    shutil.copytree(FIXTURES / fixture, directory)
    state = (directory / "state.json").read_bytes()
    if code == 2:
        with pytest.raises(SystemExit) as exited:
            main(["unblock", str(directory), *argv])
        assert exited.value.code == code
    else:
        assert main(["unblock", str(directory), *argv]) == code
    assert message in capsys.readouterr().err
    assert (directory / "state.json").read_bytes() == state


# -- serve-vpcd ----------------------------------------------------------------------------------


def test_serve_vpcd_gives_nss_and_pkcs11_cards_a_profile_and_a_puk() -> None:
    parser = _parser()
    nss = _backend(
        parser.parse_args(
            [
                "serve-vpcd",
                "--nss",
                "sql:/x",
                "--cert",
                "a",
                "--profile",
                "piv",
                "--puk",
                "12345678",
            ]
        )
    )
    assert isinstance(nss, NssDatabase)
    assert (nss.applications, nss.atr, nss.puk) == (Applications.PIV, None, "12345678")
    token = _backend(
        parser.parse_args(
            ["serve-vpcd", "--pkcs11", "m.so", "--profile", "cac+piv", "--atr", "cac"]
        )
    )
    assert isinstance(token, Pkcs11Token)
    assert (token.applications, token.atr, token.puk) == (Applications.CAC_PIV, CAC_ATR, None)
    plain = _backend(parser.parse_args(["serve-vpcd", "--pkcs11", "m.so"]))
    assert isinstance(plain, Pkcs11Token)
    assert (plain.applications, plain.atr) == (Applications.CAC, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve-vpcd", "{dir}", "--profile", "piv"], "--profile: not for a card directory"),
        (["serve-vpcd", "{dir}", "--puk", "12345678"], "--puk: not for a card directory"),
        (
            ["serve-vpcd", "--nss", "sql:{dir}", "--cert", "a", "--puk", "12345678"],
            "a PUK needs a card with PIV",
        ),
    ],
)
def test_serve_vpcd_refusals_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([arg.format(dir=tmp_path) for arg in argv]) == 1
    assert message in capsys.readouterr().err


def test_serve_vpcd_refuses_a_puk_no_card_can_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve-vpcd", "--nss", f"sql:{tmp_path}", "--cert", "a", "--puk", "12"])
    assert exited.value.code == 2
    assert "--puk" in capsys.readouterr().err


# -- the command's default card ------------------------------------------------------------------


def test_the_default_card_is_cac_piv_with_a_card_authentication_key(tmp_path: Path) -> None:
    assert main(["new", str(tmp_path / "card"), *FAST]) == 0
    profile = CardStore(tmp_path / "card").load_profile()
    assert profile.applications is Applications.CAC_PIV
    assert [c.label for c in profile.credentials] == [
        "ID",
        "Signature",
        "Encryption",
        "Card Authentication",
    ]
    card_auth = profile.credentials[3].certificate
    usage = card_auth.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [x509.ObjectIdentifier("2.16.840.1.101.3.6.8")]  # id-PIV-cardAuth
    # 9E answers without a PIN, as its PIV access rule says.
    card = CardStore(tmp_path / "card").open_card()
    assert tx(card, CommandAPDU(0x00, 0xA4, 0x04, 0x00, PIV_AID, 256)) == 0x9000
    block = b"\x00\x01" + b"\xff" * 90 + b"\x00" + bytes(35)
    template = bytes((0x7C, 0x81, 0x85, 0x82, 0x00, 0x81, 0x81, 0x80)) + block
    assert tx(card, CommandAPDU(0x00, 0x87, 0x06, 0x9E, template, 256)) == 0x9000
