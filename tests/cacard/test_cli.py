"""The ``cacard`` command: new, import, info, unblock, and its errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cacard.atr import CAC_ATR_T1
from cacard.cli import main
from cacard.store import CardStore

from .cards import WRONG_PIN_HEX, credential, private_key, send


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() configures structlog for a process; give the other tests theirs back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_new_makes_a_card_and_shows_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "card"
    assert main(["new", str(card), "--certs", "2", "--key-size", "1024", "--pin", "123456"]) == 0
    out = capsys.readouterr().out
    assert "PIN 123456" in out
    assert "'CAC ID Certificate', RSA-1024" in out
    assert "'CAC Email Signature Certificate', RSA-1024" in out
    assert "3 of 3 tries left" in out
    assert len(CardStore(card).load_profile().credentials) == 2


def test_import_pem_pairs_and_pkcs12(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert = tmp_path / "c.pem"
    key = tmp_path / "k.pem"
    cert.write_bytes(credential(0).certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key(0).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    p12 = tmp_path / "x.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"x",
            private_key(1),
            credential(1).certificate,
            None,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    card = tmp_path / "card"
    argv = ["import", str(card), "--cert", str(cert), "--key", str(key), "--pkcs12", str(p12)]
    assert main([*argv, "--password", "pw"]) == 0
    profile = CardStore(card).load_profile()
    assert [c.certificate for c in profile.credentials] == [
        credential(0).certificate,
        credential(1).certificate,
    ]
    assert "made card" in capsys.readouterr().out


def test_import_refuses_a_key_of_another_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_bytes(credential(0).certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private_key(1).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert main(["import", str(tmp_path / "card"), "--cert", str(cert), "--key", str(key)]) == 1
    assert "does not belong" in capsys.readouterr().err
    assert not (tmp_path / "card").exists()


def test_unblock_refills_the_tries(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "card"
    main(
        [
            "new",
            str(path),
            "--profile",
            "cac",
            "--certs",
            "1",
            "--key-size",
            "1024",
            "--pin-tries",
            "1",
        ]
    )
    send(CardStore(path).open_card(), "00 20 00 00 08 " + WRONG_PIN_HEX)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert "BLOCKED" in capsys.readouterr().out
    assert main(["unblock", str(path), "--pin", "4321"]) == 0
    assert CardStore(path).load_state().pin.tries_remaining == 1
    assert CardStore(path).load_state().pin.reference.matches(b"4321")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["new", "{dir}", "--pin", "12"], "4 to 8 digits"),
        (["new", "{dir}", "--certs", "11"], "1 to 10"),
        (["new", "{dir}", "--key-size", "100"], "1024-4096"),
        (["info", "{dir}"], "not a card directory"),
        (["import", "{dir}"], "at least one"),
        (["import", "{dir}", "--cert", "x.pem"], "one --key for every --cert"),
        (["serve-vpcd", "{dir}"], "not a card directory"),
        (["serve-vpcd"], "give one card: DIR, --nss DB or --pkcs11 MODULE"),
        (["serve-vpcd", "{dir}", "--nss", "sql:{dir}"], "give one card"),
        (["serve-vpcd", "{dir}", "--pin", "1234", "--atr", "cac"], "--pin, --atr: not for a card"),
        (["serve-vpcd", "--nss", "sql:{dir}"], "name its certificates with --cert"),
        (["serve-vpcd", "--nss", "sql:{dir}", "--cert", "a", "--token", "t"], "--token: not for"),
        (["serve-vpcd", "--pkcs11", "m.so", "--nss-password-file", "f"], "not for --pkcs11"),
        (["serve-vpcd", "--nss", "sql:{dir}", "--cert", "a", "--pin", "12"], "4 to 8 digits"),
        (
            ["serve-vpcd", "--nss", "sql:{dir}", "--cert", "a", "--nss-password-file", "{dir}/no"],
            "--nss-password-file {dir}/no: No such file",
        ),
        (["serve-vpcd", "--pkcs11", "{dir}/absent.so"], "cannot load PKCS#11 module"),
    ],
)
def test_errors_are_one_line_on_stderr_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main([arg.format(dir=tmp_path) for arg in argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cacard: ")
    assert message.format(dir=tmp_path) in err


def test_new_can_make_a_card_that_offers_t1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    card = tmp_path / "card"
    assert main(["new", str(card), "--certs", "1", "--key-size", "1024", "--atr", "cac-t1"]) == 0
    assert CardStore(card).load_profile().atr == CAC_ATR_T1
    capsys.readouterr()
    assert main(["info", str(card)]) == 0
    assert "3B FA 18 00 00 80 31 FE 45 73 66 74 65 20 63 64 31 34 34 FA (T=0 T=1)" in (
        capsys.readouterr().out
    )


def test_an_atr_a_card_cannot_have_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["new", str(tmp_path / "card"), "--atr", "3BFA1800008031FE4573667465206364313434"])
    assert exited.value.code == 2
    assert "needs a TCK byte" in capsys.readouterr().err
    assert not (tmp_path / "card").exists()
