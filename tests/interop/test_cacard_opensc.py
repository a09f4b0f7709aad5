"""A ``cacard new`` card served through our vpcd bridge, used by real OpenSC (0.23) tools
through a private pcscd: detection, PKCS#15 and PKCS#11 listings, login, signatures and
decryptions checked with ``cryptography``, the PIN retry counter, data objects,
``pkcs11-tool --test``, and a card whose ATR offers T=1 (``cacard new --atr cac-t1``).

The card runs as ``python -m cacard serve-vpcd`` in the private pcscd's network namespace, on
vpcd slot 1; the PIN-blocking and T=1 tests serve cards of their own on slot 0 meanwhile. Every
OpenSC command names its reader. (Cards backed by NSS and PKCS#11:
``test_cacard_opensc_backends.py``.)
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from cacard.applets.containers import DataObjectId
from cacard.atr import CAC_ATR_T1
from cacard.store import CardStore

from . import opensc
from .opensc import OAEP_SHA256, Reader, cacard, sha256_digest_info
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd

pcscd = fixtures.pcscd
opensc_env = opensc.opensc_env

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        opensc.missing_tools(), reason="OpenSC tools are not installed (Debian package opensc)"
    ),
]

PIN = "77777777"
WRONG_PIN = "11111111"
NEW_PIN = "24681357"
SLOT = 1
PIN_TEST_SLOT = 0
MESSAGE = b"sign me, cacard\n"


@dataclass
class ServedCard(Reader):
    """A card directory served to the private pcscd by a ``cacard serve-vpcd`` process."""

    store: CardStore

    def certificate(self, index: int) -> x509.Certificate:
        return self.store.load_profile().credentials[index].certificate

    def public_key(self, index: int) -> rsa.RSAPublicKey:
        key = self.certificate(index).public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        return key


def make_card(directory: Path, *extra: str) -> CardStore:
    result = subprocess.run(
        cacard("new", str(directory), "--profile", "cac", "--pin", PIN, *extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return CardStore(directory)


def serve(
    pcscd: Pcscd, store: CardStore, workdir: Path, slot: int, *, verbosity: str = "-v"
) -> subprocess.Popen[bytes]:
    """Start serving ``store`` on vpcd ``slot`` and wait until PC/SC sees the card."""
    return opensc.serve(pcscd, [str(store.path)], workdir, slot, verbosity=verbosity)


stop = opensc.stop


@pytest.fixture(scope="module")
def served(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedCard]:
    workdir = tmp_path_factory.mktemp("cacard")
    store = make_card(workdir / "card")
    process = serve(pcscd, store, workdir, SLOT)
    try:
        yield ServedCard(opensc_env, workdir, SLOT, pcscd.reader_name(SLOT), store)
    finally:
        stop(pcscd, process, SLOT)


def test_opensc_tool_detects_a_cac_card(served: ServedCard) -> None:
    assert served.run("opensc-tool", "-n").stdout.strip() == "Common Access Card (CAC)"
    atr = served.run("opensc-tool", "-a").stdout.split()
    assert "".join(atr).lower().replace(":", "") == "3b7a18000073667465206364313434"


def test_pkcs15_tool_shows_3_certificates_and_3_keys(served: ServedCard) -> None:
    out = served.run("pkcs15-tool", "-D").stdout
    assert out.count("X.509 Certificate [") == 3
    assert out.count("Private RSA Key [") == 3
    for label in (
        "CAC ID Certificate",
        "CAC Email Signature Certificate",
        "CAC Email Encryption Certificate",
    ):
        assert f"Private RSA Key [{label}]" in out
    assert f"Serial number  : {served.store.load_profile().card_id.hex()}" in out
    assert "PKCS#15 Card [Test User]" in out  # OpenSC's token label: CN of the first cert


def test_pkcs11_tool_lists_the_token_and_its_objects(served: ServedCard) -> None:
    out = served.run("pkcs11-tool", "-L", "-O").stdout
    serial = served.store.load_profile().card_id.hex()
    assert "token label        : Test User" in out
    assert f"serial num         : {serial[-16:]}" in out
    assert "rng" in out  # GET CHALLENGE works, so OpenSC offers an RNG
    assert out.count("Certificate Object; type = X.509 cert") == 3
    assert out.count("Public Key Object; RSA 2048 bits") == 3
    assert "label:          'Person Instance'" in out


def test_data_objects_read(served: ServedCard) -> None:
    # libcacard's data objects cannot be read by OpenSC (its properties objects are not 17
    # bytes long); this card's can.
    out = served.workdir / "person.bin"
    served.run("pkcs15-tool", "--read-data-object", "Person Instance", "-o", str(out))
    profile = served.store.load_profile()
    assert out.read_bytes() == profile.data_objects[DataObjectId.PERSON_INSTANCE]
    empty = served.run("pkcs15-tool", "--read-data-object", "Personnel").stdout
    assert "Data Object (0 bytes)" in empty


def sign(served: ServedCard, key_id: str, mechanism: str, data: bytes) -> bytes:
    return served.sign(PIN, key_id, mechanism, data)


@pytest.mark.parametrize(("key_id", "index"), [("0001", 0), ("0002", 1)])
def test_rsa_pkcs_signature_verifies(served: ServedCard, key_id: str, index: int) -> None:
    # CKM_RSA_PKCS signs the given bytes as they are: give it a SHA-256 DigestInfo.
    signature = sign(served, key_id, "RSA-PKCS", sha256_digest_info(MESSAGE))
    served.public_key(index).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_sha256_rsa_pkcs_signature_verifies(served: ServedCard) -> None:
    signature = sign(served, "0001", "SHA256-RSA-PKCS", MESSAGE)
    served.public_key(0).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_sha256_rsa_pkcs_pss_signature_verifies(served: ServedCard) -> None:
    signature = sign(served, "0002", "SHA256-RSA-PKCS-PSS", MESSAGE)
    # pkcs11-tool's defaults: MGF1 with SHA-256 and a salt as long as the digest.
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    served.public_key(1).verify(signature, MESSAGE, pss, hashes.SHA256())


def decrypt(served: ServedCard, mechanism: str, ciphertext: bytes, *options: str) -> bytes:
    return served.decrypt(PIN, "0003", mechanism, ciphertext, *options)


def test_rsa_pkcs_decryption_gives_the_plaintext(served: ServedCard) -> None:
    ciphertext = served.public_key(2).encrypt(b"1234567890\n", padding.PKCS1v15())
    assert decrypt(served, "RSA-PKCS", ciphertext) == b"1234567890\n"


def test_rsa_pkcs_oaep_decryption_gives_the_plaintext(served: ServedCard) -> None:
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    ciphertext = served.public_key(2).encrypt(b"a secret", oaep)
    assert decrypt(served, "RSA-PKCS-OAEP", ciphertext, *OAEP_SHA256) == b"a secret"


def test_pkcs11_tool_test_passes(served: ServedCard) -> None:
    result = served.run("pkcs11-tool", "--login", "--pin", PIN, "--test")
    assert "No errors" in result.stdout
    # GET CHALLENGE: libcacard lacks it, so OpenSC's RNG test failed there.
    random_section = result.stdout.split("C_GenerateRandom", 1)[1].split("Digests", 1)[0]
    assert "seems to be OK" in random_section
    for line in ("RSA-X-509: OK", "SHA256-RSA-PKCS: OK", "RSA-PKCS-OAEP"):
        assert line in result.stdout


def test_an_apdu_round_trip_through_vpcd_takes_well_under_44_ms(served: ServedCard) -> None:
    # Without TCP_QUICKACK re-armed after every read, each APDU waits ~44 ms for a delayed ACK.
    (reader,) = [r for r in readers() if str(r) == served.reader]
    connection = reader.createConnection()
    connection.connect()
    try:
        select = list(bytes.fromhex("00 A4 04 0C 07 A0 00 00 01 16 DB 00"))
        times = []
        for _ in range(200):
            start = time.perf_counter()
            _, sw1, sw2 = connection.transmit(select)
            times.append(time.perf_counter() - start)
            assert (sw1, sw2) == (0x90, 0x00)
    finally:
        connection.disconnect()
    assert statistics.median(times) < 0.005, f"median {statistics.median(times) * 1e3:.1f} ms"


def test_pin_change_then_wrong_pins_count_down_and_block_the_card_even_across_restarts(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    store = make_card(tmp_path / "card", "--certs", "1", "--key-size", "1024")
    card = ServedCard(opensc_env, tmp_path, PIN_TEST_SLOT, pcscd.reader_name(PIN_TEST_SLOT), store)
    process = serve(pcscd, store, tmp_path, PIN_TEST_SLOT)
    try:
        assert card.pin_status() == "63C3"
        # CHANGE REFERENCE DATA, which OpenSC sends for --change-pin; the new PIN is persisted.
        card.run("pkcs11-tool", "--login", "--pin", PIN, "--change-pin", "--new-pin", NEW_PIN)
        assert CardStore(store.path).load_state().pin.reference.matches(NEW_PIN.encode())
        card.run("pkcs11-tool", "--login", "--pin", NEW_PIN, "-O")
        for left in (2, 1, 0):
            result = card.run("pkcs11-tool", "--login", "--pin", WRONG_PIN, "-O", check=False)
            assert "CKR_PIN_INCORRECT" in result.stderr
            assert CardStore(store.path).load_state().pin.tries_remaining == left
            assert card.pin_status() == ("6983" if left == 0 else f"63C{left}")
        result = card.run("pkcs11-tool", "--login", "--pin", NEW_PIN, "-O", check=False)
        assert "CKR_PIN_LOCKED" in result.stderr
    finally:
        stop(pcscd, process, PIN_TEST_SLOT)
    process = serve(pcscd, store, tmp_path, PIN_TEST_SLOT)  # a restart: state.json says blocked
    try:
        result = card.run("pkcs11-tool", "--login", "--pin", NEW_PIN, "-O", check=False)
        assert "CKR_PIN_LOCKED" in result.stderr
        assert card.pin_status() == "6983"
    finally:
        stop(pcscd, process, PIN_TEST_SLOT)


def test_a_card_offering_t1_is_still_a_cac_and_gets_le_so_no_get_response(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    store = make_card(tmp_path / "card", "--certs", "1", "--key-size", "1024", "--atr", "cac-t1")
    card = ServedCard(opensc_env, tmp_path, PIN_TEST_SLOT, pcscd.reader_name(PIN_TEST_SLOT), store)
    process = serve(pcscd, store, tmp_path, PIN_TEST_SLOT, verbosity="-vv")
    try:
        atr = card.run("opensc-tool", "-a").stdout.split()
        assert bytes.fromhex("".join(atr).replace(":", "")) == CAC_ATR_T1
        (reader,) = [r for r in readers() if str(r) == card.reader]
        connection = reader.createConnection()
        connection.connect()  # T=0 or T=1, as OpenSC asks: pcscd picks T=1
        try:
            assert connection.getProtocol() == CardConnection.T1_protocol
        finally:
            connection.disconnect()
        # OpenSC's CAC driver finds the card by its applets, not by its ATR.
        assert card.run("opensc-tool", "-n").stdout.strip() == "Common Access Card (CAC)"
        signature = sign(card, "0001", "SHA256-RSA-PKCS", MESSAGE)
        card.public_key(0).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
    finally:
        stop(pcscd, process, PIN_TEST_SLOT)
    commands = re.findall(
        r"cacard\.apdu\s+command=([0-9a-z<>]+)", (tmp_path / "serve.log").read_text()
    )
    # Under T=1 OpenSC sends Le: READ BUFFER asks for its 2 bytes, and with a 1024-bit key every
    # answer fits its Le, so nothing is left for GET RESPONSE (under T=0 every one needs it).
    assert "0052000002010202" in commands
    assert not [command for command in commands if command.startswith("00c0")]
