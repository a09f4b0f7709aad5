"""``cacard new --profile piv`` and ``cac+piv`` cards provisioned by PIV tools alone, through
pcscd and vpcd: yubico-piv-tool (Debian's 2.2.0) reads the status, verifies, changes and
unblocks the PIN, authenticates with the default 9B management key, generates RSA-2048, P-256
and P-384 keys in 9A, 9C, 9D and 9E and imports a certificate for each; OpenSC's PIV driver
then lists the four certificates and keys and signs and derives with the new keys, checked
against the imported certificates with ``cryptography``, before and after the card process
restarts.

yubico-piv-tool's ``selfsign-certificate`` and ``request-certificate`` are not run: 2.2.0
built with OpenSSL 3 fails them before sending the card anything (Yubico/yubico-piv-tool
issue 388), so a test CA issues the certificates instead.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cacard.store import CardStore

from . import opensc
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd
from .piv_card import (
    KEY_IDS,
    PIN,
    PUK,
    PivReader,
    issue_pem,
    make_card,
    missing_yubico_piv_tool,
    verify,
)

pcscd = fixtures.pcscd
opensc_env = opensc.opensc_env

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        opensc.missing_tools(), reason="OpenSC tools are not installed (Debian package opensc)"
    ),
    pytest.mark.skipif(
        missing_yubico_piv_tool(), reason="yubico-piv-tool is not installed (Debian package)"
    ),
]

SLOT = 1
OWN_SLOT = 0
NEW_PIN = "24681357"
WRONG_PIN = "11111111"
MESSAGE = b"provisioned by PIV tools\n"


def serve(pcscd: Pcscd, store: CardStore, workdir: Path, slot: int) -> subprocess.Popen[bytes]:
    return opensc.serve(pcscd, [str(store.path)], workdir, slot, verbosity="-vv")


@dataclass
class Served:
    """The module's card, its directory and the process serving it (replaced on restart)."""

    card: PivReader
    store: CardStore
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module", params=["piv", "cac+piv"])
def served(
    request: pytest.FixtureRequest,
    pcscd: Pcscd,
    opensc_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("piv-yubico")
    store = make_card(workdir / "card", request.param, "--certs", "1", "--key-size", "1024")
    card = PivReader(opensc_env, workdir, SLOT, pcscd.reader_name(SLOT))
    served = Served(card, store, serve(pcscd, store, workdir, SLOT))
    try:
        yield served
    finally:
        opensc.stop(pcscd, served.process, SLOT)


@pytest.fixture
def card(served: Served) -> PivReader:
    return served.card


def test_the_card_answers_as_yubico_piv_tool_expects(card: PivReader) -> None:
    assert card.piv_select_gaps() == []


def test_status_shows_the_chuid_ccc_certificate_and_pin_tries(card: PivReader) -> None:
    out = card.yubico("-a", "status").stdout
    assert "CHUID:\t30" in out  # the FASC-N first
    assert "CCC:\tf0" in out
    assert "Slot 9a:\t\n\tAlgorithm:\tRSA1024" in out
    assert "Subject DN:\tO=cacard test, CN=Test User" in out
    assert "PIN tries left:\t3" in out


def test_verify_and_change_the_pin(card: PivReader) -> None:
    card.yubico("-a", "verify-pin", "-P", PIN)
    wrong = card.yubico("-a", "verify-pin", "-P", WRONG_PIN, check=False)
    assert wrong.returncode != 0
    assert "2 tries left" in wrong.stderr
    card.yubico("-a", "change-pin", "-P", PIN, "-N", NEW_PIN)
    card.yubico("-a", "verify-pin", "-P", NEW_PIN)  # a good PIN refills the tries
    card.yubico("-a", "change-pin", "-P", NEW_PIN, "-N", PIN)
    assert "PIN tries left:\t3" in card.yubico("-a", "status").stdout


def provision(card: PivReader, slot: str, algorithm: str) -> None:
    """yubico-piv-tool generates a key in ``slot`` (authenticating with the default management
    key) and imports a certificate a test CA issued for it."""
    public = card.workdir / f"public-{slot}.pem"
    card.yubico("-a", "generate", "-s", slot, "-A", algorithm, "-o", str(public))
    certificate = card.workdir / f"cert-{slot}.pem"
    certificate.write_bytes(issue_pem(public.read_bytes(), f"vscard {slot} {algorithm}"))
    card.yubico("-a", "import-certificate", "-s", slot, "-i", str(certificate))


@pytest.mark.parametrize(
    ("slot", "algorithm", "mechanism"),
    [
        ("9a", "RSA2048", "SHA256-RSA-PKCS"),
        ("9c", "ECCP256", "ECDSA-SHA256"),
        ("9e", "ECCP384", "ECDSA-SHA384"),
    ],
)
def test_generated_key_signs_through_opensc(
    card: PivReader, slot: str, algorithm: str, mechanism: str
) -> None:
    provision(card, slot, algorithm)
    key_id = KEY_IDS[slot]
    signature = card.sign(PIN, key_id, mechanism, MESSAGE)
    verify(card.certificate(key_id), signature, MESSAGE, mechanism)


def test_generated_rsa_key_signs_pss(card: PivReader) -> None:
    # OpenSC pads for PSS; the card does raw RSA.
    signature = card.sign(PIN, KEY_IDS["9a"], "SHA256-RSA-PKCS-PSS", MESSAGE)
    verify(card.certificate(KEY_IDS["9a"]), signature, MESSAGE, "SHA256-RSA-PKCS-PSS")


def test_generated_p384_key_management_key_derives_ecdh(card: PivReader) -> None:
    provision(card, "9d", "ECCP384")
    peer = ec.generate_private_key(ec.SECP384R1())
    card_public = card.certificate(KEY_IDS["9d"]).public_key()
    assert isinstance(card_public, ec.EllipticCurvePublicKey)
    assert card.derive(KEY_IDS["9d"], peer.public_key()) == peer.exchange(ec.ECDH(), card_public)


@pytest.mark.parametrize(
    ("slot", "test", "said"),
    [
        ("9a", "test-signature", "Successful RSA verification"),
        ("9d", "test-decipher", "Successfully performed ECDH exchange"),
    ],
)
def test_yubico_piv_tool_checks_the_keys_against_their_certificates(
    card: PivReader, slot: str, test: str, said: str
) -> None:
    # Its own checks: it pads RSA itself and sends the whole block, and derives with an
    # ephemeral key of its own (tool/yubico-piv-tool.c, test_signature and test_decipher).
    certificate = str(card.workdir / f"cert-{slot}.pem")
    out = card.yubico("-a", "verify-pin", "-P", PIN, "-a", test, "-s", slot, "-i", certificate)
    assert said in out.stdout + out.stderr


def test_opensc_lists_the_four_certificates_and_keys(card: PivReader) -> None:
    out = card.run("pkcs15-tool", "-D").stdout
    assert out.count("X.509 Certificate [") == 4
    assert out.count("Private RSA Key [") == 1
    assert out.count("Private EC Key [") == 3
    assert "Private EC Key [CARD AUTH key]" in out


def test_a_restarted_card_keeps_the_generated_keys_and_certificates(
    pcscd: Pcscd, served: Served, card: PivReader
) -> None:
    assert sorted(served.store.load_piv().keys) == [0x9A, 0x9C, 0x9D, 0x9E]
    opensc.stop(pcscd, served.process, SLOT)
    served.process = serve(pcscd, served.store, card.workdir, SLOT)
    for slot, mechanism in (("9a", "SHA256-RSA-PKCS"), ("9c", "ECDSA-SHA256")):
        signature = card.sign(PIN, KEY_IDS[slot], mechanism, MESSAGE)
        verify(card.certificate(KEY_IDS[slot]), signature, MESSAGE, mechanism)
    public = card.certificate(KEY_IDS["9e"]).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert pem == (card.workdir / "public-9e.pem").read_bytes()


def test_the_puk_unblocks_a_blocked_pin(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    store = make_card(tmp_path / "card", "piv", "--certs", "1", "--key-size", "1024")
    card = PivReader(opensc_env, tmp_path, OWN_SLOT, pcscd.reader_name(OWN_SLOT))
    process = serve(pcscd, store, tmp_path, OWN_SLOT)
    try:
        for _ in range(3):
            card.yubico("-a", "verify-pin", "-P", WRONG_PIN, check=False)
        blocked = card.yubico("-a", "verify-pin", "-P", PIN, check=False)
        assert "blocked" in blocked.stderr
        # RESET RETRY COUNTER with the PUK sets a new PIN, persisted with the card's.
        card.yubico("-a", "unblock-pin", "-P", PUK, "-N", NEW_PIN)
        assert CardStore(store.path).load_state().pin.reference.matches(NEW_PIN.encode())
        card.yubico("-a", "verify-pin", "-P", NEW_PIN)
        wrong_puk = card.yubico("-a", "unblock-pin", "-P", "87654321", "-N", PIN, check=False)
        assert wrong_puk.returncode != 0
        assert "2 tries left" in wrong_puk.stderr
    finally:
        opensc.stop(pcscd, process, OWN_SLOT)
