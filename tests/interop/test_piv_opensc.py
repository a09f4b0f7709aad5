"""``cacard new --profile piv`` and ``--profile cac+piv`` cards through pcscd and vpcd, used by
OpenSC's (0.23) PIV driver: detection, the PKCS#15 listing of the four certificates and keys
(9A, 9C, 9D and 9E with ``--certs 4``), RSA PKCS#1 v1.5 and PSS signatures on 9A, 9C and 9E
(OpenSC pads, the card does raw RSA), RSA decryption on 9D with RSA-2048 and RSA-3072 keys
(whose GENERAL AUTHENTICATE OpenSC sends with algorithm ``05``), ``pkcs11-tool --test``, ECDSA
on P-256 and P-384 keys (a SHA-256 hash on a P-384 key too) and ECDH on 9D; every result
checked with ``cryptography`` against the card directory's certificate, which OpenSC reads back
unchanged."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from cacard.store import CardStore

from . import opensc
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd
from .piv_card import KEY_IDS, PIN, PivReader, make_card, verify

pcscd = fixtures.pcscd
opensc_env = opensc.opensc_env

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        opensc.missing_tools(), reason="OpenSC tools are not installed (Debian package opensc)"
    ),
]

SLOT = 1
OWN_SLOT = 0
MESSAGE = b"sign me, PIV\n"
PIV_DRIVER = "Personal Identity Verification Card"
#: The EC card: P-384 in 9A, P-256 in 9C, P-384 in 9D (ECDH only, for OpenSC), P-256 in 9E.
EC_KEYS = {"9a": "p384", "9c": "p256", "9d": "p384", "9e": "p256"}


def serve(pcscd: Pcscd, store: CardStore, workdir: Path, slot: int) -> subprocess.Popen[bytes]:
    return opensc.serve(pcscd, [str(store.path)], workdir, slot, verbosity="-vv")


def certificate_of(store: CardStore, slot: str) -> x509.Certificate:
    """The certificate the card directory holds for ``slot`` (credentials 1-4: 9A-9E)."""
    index = ("9a", "9c", "9d", "9e").index(slot)
    return store.load_profile().credentials[index].certificate


@dataclass
class RSACard:
    """A ``cacard new --certs 4`` card with RSA keys of ``bits`` in 9A, 9C, 9D and 9E, served on
    SLOT."""

    card: PivReader
    store: CardStore
    bits: int


@pytest.fixture(
    scope="module",
    params=[("piv", 2048), ("cac+piv", 2048), ("piv", 3072)],
    ids=["piv", "cac+piv", "piv-rsa3072"],
)
def rsa_card(
    request: pytest.FixtureRequest,
    pcscd: Pcscd,
    opensc_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RSACard]:
    profile, bits = request.param
    workdir = tmp_path_factory.mktemp("piv-opensc")
    store = make_card(workdir / "card", profile, "--key-size", str(bits), "--certs", "4")
    process = serve(pcscd, store, workdir, SLOT)
    card = PivReader(opensc_env, workdir, SLOT, pcscd.reader_name(SLOT))
    try:
        yield RSACard(card, store, bits)
    finally:
        opensc.stop(pcscd, process, SLOT)


def test_opensc_picks_its_piv_driver(rsa_card: RSACard) -> None:
    card = rsa_card.card
    assert card.run("opensc-tool", "-n").stdout.strip() == PIV_DRIVER
    assert "Manufacturer ID: piv_II" in card.run("pkcs15-tool", "-D").stdout


def test_pkcs15_lists_the_certificates_and_keys(rsa_card: RSACard) -> None:
    card, store = rsa_card.card, rsa_card.store
    out = card.run("pkcs15-tool", "-D").stdout
    assert out.count("X.509 Certificate [") == 4
    assert out.count("Private RSA Key [") == 4
    for label in ("PIV AUTH key", "SIGN key", "KEY MAN key", "CARD AUTH key"):
        assert f"Private RSA Key [{label}]" in out
    for slot in ("9a", "9c", "9d", "9e"):
        assert card.certificate(KEY_IDS[slot]) == certificate_of(store, slot)


@pytest.mark.parametrize("slot", ["9a", "9c", "9e"])
@pytest.mark.parametrize("mechanism", ["SHA256-RSA-PKCS", "SHA256-RSA-PKCS-PSS"])
def test_rsa_signature_verifies(rsa_card: RSACard, slot: str, mechanism: str) -> None:
    card, store = rsa_card.card, rsa_card.store
    # 9C is PIN-always: pkcs11-tool logs in again (context specific) right before it signs.
    signature = card.sign(PIN, KEY_IDS[slot], mechanism, MESSAGE)
    verify(certificate_of(store, slot), signature, MESSAGE, mechanism)


def test_rsa_decryption_on_the_key_management_key(rsa_card: RSACard) -> None:
    card, store = rsa_card.card, rsa_card.store
    public = certificate_of(store, "9d").public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    ciphertext = public.encrypt(b"a PIV secret", padding.PKCS1v15())
    assert card.decrypt(PIN, KEY_IDS["9d"], "RSA-PKCS", ciphertext) == b"a PIV secret"


def test_pkcs11_tool_test_passes(rsa_card: RSACard) -> None:
    result = rsa_card.card.run("pkcs11-tool", "--login", "--pin", PIN, "--test")
    out = result.stdout
    if rsa_card.store.load_profile().applications.cac:
        # The CCC of a cac+piv card names a CAC PKI applet, so OpenSC takes it for a dual
        # CAC/PIV card, to which it gives no random numbers (OpenSC, card-piv.c, piv_init:
        # CI_NO_RANDOM): that is the one error.
        assert "1 errors" in out
        assert "C_GenerateRandom" in result.stderr
    else:
        assert "No errors" in out
    for line in ("RSA-X-509: OK", "SHA256-RSA-PKCS: OK", "RSA-PKCS-OAEP"):
        assert line in out


def make_ec_card(directory: Path) -> CardStore:
    """A piv card with :data:`EC_KEYS` in 9A, 9C, 9D and 9E."""
    keys = [arg for slot, kind in EC_KEYS.items() for arg in ("--key", f"{slot}={kind}")]
    return make_card(directory, "piv", "--certs", str(len(EC_KEYS)), *keys)


@pytest.fixture(scope="module")
def ec_card(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PivReader, CardStore]]:
    workdir = tmp_path_factory.mktemp("piv-opensc-ec")
    store = make_ec_card(workdir / "card")
    process = serve(pcscd, store, workdir, OWN_SLOT)
    try:
        yield PivReader(opensc_env, workdir, OWN_SLOT, pcscd.reader_name(OWN_SLOT)), store
    finally:
        opensc.stop(pcscd, process, OWN_SLOT)


def test_pkcs15_lists_the_ec_keys(ec_card: tuple[PivReader, CardStore]) -> None:
    card, _ = ec_card
    out = card.run("pkcs15-tool", "-D").stdout
    assert out.count("X.509 Certificate [") == 4
    assert out.count("Private EC Key [") == 4
    # The private keys, then the public ones.
    assert re.findall(r"FieldLength\s+: (\d+)", out) == ["384", "256", "384", "256"] * 2


@pytest.mark.parametrize(
    ("slot", "mechanism"),
    [
        ("9a", "ECDSA-SHA384"),
        ("9a", "ECDSA-SHA256"),  # a 32-byte hash on a P-384 key
        ("9c", "ECDSA-SHA256"),
        ("9c", "ECDSA-SHA384"),  # OpenSC cuts the hash to the P-256 key's 32 bytes
        ("9e", "ECDSA-SHA256"),
    ],
)
def test_ecdsa_signature_verifies(
    ec_card: tuple[PivReader, CardStore], slot: str, mechanism: str
) -> None:
    card, store = ec_card
    signature = card.sign(PIN, KEY_IDS[slot], mechanism, MESSAGE)
    assert card.certificate(KEY_IDS[slot]) == certificate_of(store, slot)
    verify(certificate_of(store, slot), signature, MESSAGE, mechanism)


def test_ecdh_on_the_key_management_key(ec_card: tuple[PivReader, CardStore]) -> None:
    card, store = ec_card
    card_public = certificate_of(store, "9d").public_key()
    assert isinstance(card_public, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(card_public.curve)
    assert card.derive(KEY_IDS["9d"], peer.public_key()) == peer.exchange(ec.ECDH(), card_public)


def test_general_authenticate_names_the_key_size(rsa_card: RSACard) -> None:
    card = rsa_card.card
    out = card.run("pkcs15-tool", "-D").stdout
    # The private keys and the public ones.
    assert out.count(f"ModLength      : {rsa_card.bits}") == 8
    card.sign(PIN, KEY_IDS["9a"], "SHA256-RSA-PKCS", MESSAGE)
    commands = re.findall(r"command=([0-9a-f]+)", (card.workdir / "serve.log").read_text())
    # OpenSC derives the algorithm from the block size (card-piv.c,
    # piv_validate_general_authentication): 256 bytes is 07, 384 bytes 05, SP 800-78-5's
    # RSA-3072 (the last command of a chain of short APDUs starts with CLA 00).
    algorithm = {2048: "07", 3072: "05"}[rsa_card.bits]
    assert any(command.startswith(f"0087{algorithm}9a") for command in commands)
    assert not [c for c in commands if c[2:4] == "87" and c[6:8] == "9a" and c[4:6] != algorithm]
