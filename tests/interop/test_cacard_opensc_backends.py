"""Cards backed by an NSS database and by a SoftHSM2 token, served by ``cacard serve-vpcd --nss``
and ``--pkcs11`` and used by real OpenSC (0.23) tools through the private pcscd: the same
signatures and decryptions as a ``cacard new`` card, each checked with ``cryptography`` against
the certificate as the backend holds it (``certutil -L``, the token's certificate object).

- The NSS database is libcacard's layout, made by ``certutil``: ``cert1``..``cert3``, RSA-2048,
  with a password, which is the card PIN (libcacard's rule).
- The SoftHSM2 token's keys are generated on the token by ``pkcs11-tool --keypairgen`` and are
  never extractable; the token's user PIN is the card PIN. A second token with ``CKM_RSA_X_509``
  switched off shows the PKCS#1 fallback through OpenSC.
- A card with PIV (``--profile piv``) from either backend, keys made by NSS or on the token:
  9A P-256, 9C RSA-2048, 9D P-384, used by OpenSC's PIV driver (ECDSA, RSA, ECDH derive).

Each card runs as ``python -m cacard serve-vpcd`` in the private pcscd's network namespace.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tests.cacard.certificates import issue

from . import opensc
from .guest.nssdb import NICKNAMES, make_nssdb
from .opensc import OAEP_SHA256, Reader, sha256_digest_info
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

#: The NSS database password, hence the card PIN.
NSS_PASSWORD = "13572468"
#: The token's user PIN, hence the card PIN.
TOKEN_PIN = "24681357"
SO_PIN = "12345678"
#: Debian's SoftHSM2 module (cacard.pkcs11.SOFTHSM2_MODULE, which needs python-pkcs11 to import).
SOFTHSM2_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "vscard"
WRONG_PIN = "11111111"
SLOT = 1
FALLBACK_SLOT = 0
MESSAGE = b"sign me, backed cacard\n"
PLAINTEXT = b"1234567890\n"
PSS = padding.PSS(padding.MGF1(hashes.SHA256()), 32)  # pkcs11-tool: MGF1-SHA256, 32-byte salt
OAEP = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


@dataclass
class BackedCard(Reader):
    """A served card and what the test knows from its backend: the PIN and the certificates."""

    pin: str
    certificates: tuple[x509.Certificate, ...]

    def public_key(self, index: int) -> rsa.RSAPublicKey:
        key = self.certificates[index].public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        return key


def run(*argv: str | Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{argv}: {result.stdout}{result.stderr}"
    return result.stdout


# -- an NSS database ----------------------------------------------------------------------------


def nss_backend(workdir: Path) -> tuple[list[str], tuple[x509.Certificate, ...]]:
    """libcacard's database with a password: the ``serve-vpcd`` arguments and the certificates."""
    db = make_nssdb(workdir / "nssdb", password=NSS_PASSWORD)
    password_file = workdir / "nss-password"
    password_file.write_text(NSS_PASSWORD + "\n")
    certificates = tuple(
        x509.load_pem_x509_certificate(
            run("certutil", "-L", "-d", db.spec, "-n", nick, "-a").encode()
        )
        for nick in NICKNAMES
    )
    card = ["--nss", db.spec, "--nss-password-file", str(password_file)]
    for nickname in NICKNAMES:
        card += ["--cert", nickname]
    return card, certificates


# -- a SoftHSM2 token ---------------------------------------------------------------------------


def softhsm_env(directory: Path, *, mechanisms: str = "ALL") -> dict[str, str]:
    """A SoftHSM2 set-up of its own in ``directory``: the environment that selects it."""
    (directory / "tokens").mkdir(parents=True)
    config = directory / "softhsm2.conf"
    config.write_text(
        f"directories.tokendir = {directory / 'tokens'}\nobjectstore.backend = file\n"
        f"log.level = ERROR\nslots.mechanisms = {mechanisms}\n"
    )
    return {**os.environ, "SOFTHSM2_CONF": str(config)}


def make_token(directory: Path, env: dict[str, str]) -> tuple[x509.Certificate, ...]:
    """A token with three RSA-2048 keys made on it (IDs 01-03, labels cert1-cert3), each with a
    certificate from the test CA for its public key."""
    run(
        "softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
        "--pin", TOKEN_PIN, "--so-pin", SO_PIN, env=env,
    )  # fmt: skip
    tool = ("pkcs11-tool", "--module", SOFTHSM2_MODULE, "--token-label", TOKEN_LABEL)
    login = ("--login", "--pin", TOKEN_PIN)
    certificates = []
    for number, label in enumerate(NICKNAMES, start=1):
        key_id = f"{number:02x}"
        run(
            *tool, *login, "--keypairgen", "--key-type", "rsa:2048", "--id", key_id,
            "--label", label, "--usage-sign", "--usage-decrypt", env=env,
        )  # fmt: skip
        public_der = directory / f"{label}.pub.der"
        run(*tool, "--read-object", "--type", "pubkey", "--id", key_id, "-o", public_der, env=env)
        public_key = serialization.load_der_public_key(public_der.read_bytes())
        assert isinstance(public_key, rsa.RSAPublicKey)
        certificate = issue(public_key, f"vscard token {label}")
        cert_der = directory / f"{label}.cert.der"
        cert_der.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
        run(
            *tool, *login, "--write-object", cert_der, "--type", "cert", "--id", key_id,
            "--label", label, env=env,
        )  # fmt: skip
        certificates.append(certificate)
    return tuple(certificates)


def token_backend(
    workdir: Path, *, mechanisms: str = "ALL"
) -> tuple[list[str], tuple[x509.Certificate, ...], dict[str, str]]:
    """A SoftHSM2 token: the ``serve-vpcd`` arguments, the certificates, the environment."""
    env = softhsm_env(workdir / "softhsm", mechanisms=mechanisms)
    certificates = make_token(workdir / "softhsm", env)
    pin_file = workdir / "token-pin"
    pin_file.write_text(TOKEN_PIN + "\n")
    card = ["--pkcs11", SOFTHSM2_MODULE, "--token", TOKEN_LABEL, "--token-pin-file", str(pin_file)]
    return card, certificates, env


def softhsm_missing() -> bool:
    """Whether SoftHSM2 or python-pkcs11 (which ``--pkcs11`` uses) is missing."""
    if importlib.util.find_spec("pkcs11") is None:
        return True
    return not Path(SOFTHSM2_MODULE).exists() or shutil.which("softhsm2-util") is None


# -- the served cards ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["nss", "softhsm2"])
def backed(
    request: pytest.FixtureRequest,
    pcscd: Pcscd,
    opensc_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackedCard]:
    workdir = tmp_path_factory.mktemp(request.param)
    env: dict[str, str] | None = None
    if request.param == "nss":
        if shutil.which("certutil") is None:
            pytest.skip("NSS tools are not installed (Debian package libnss3-tools)")
        card, certificates = nss_backend(workdir)
        pin = NSS_PASSWORD
    else:
        if softhsm_missing():
            pytest.skip("needs SoftHSM2 (Debian package softhsm2) and python-pkcs11")
        card, certificates, env = token_backend(workdir)
        pin = TOKEN_PIN
    process = opensc.serve(pcscd, card, workdir, SLOT, env=env)
    try:
        yield BackedCard(opensc_env, workdir, SLOT, pcscd.reader_name(SLOT), pin, certificates)
    finally:
        opensc.stop(pcscd, process, SLOT)


def test_opensc_sees_a_cac_card_with_the_backends_certificates(backed: BackedCard) -> None:
    assert backed.run("opensc-tool", "-n").stdout.strip() == "Common Access Card (CAC)"
    out = backed.run("pkcs15-tool", "-D").stdout
    assert out.count("X.509 Certificate [") == 3
    assert out.count("Private RSA Key [") == 3
    for index, certificate in enumerate(backed.certificates):
        pem = backed.run("pkcs15-tool", "--read-certificate", f"000{index + 1}").stdout
        assert x509.load_pem_x509_certificate(pem.encode()) == certificate


@pytest.mark.parametrize(("key_id", "index"), [("0001", 0), ("0002", 1)])
def test_rsa_pkcs_signature_verifies(backed: BackedCard, key_id: str, index: int) -> None:
    # CKM_RSA_PKCS signs the given bytes as they are: give it a SHA-256 DigestInfo.
    signature = backed.sign(backed.pin, key_id, "RSA-PKCS", sha256_digest_info(MESSAGE))
    backed.public_key(index).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_sha256_rsa_pkcs_signature_verifies(backed: BackedCard) -> None:
    signature = backed.sign(backed.pin, "0001", "SHA256-RSA-PKCS", MESSAGE)
    backed.public_key(0).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())


def test_sha256_rsa_pkcs_pss_signature_verifies(backed: BackedCard) -> None:
    signature = backed.sign(backed.pin, "0002", "SHA256-RSA-PKCS-PSS", MESSAGE)
    backed.public_key(1).verify(signature, MESSAGE, PSS, hashes.SHA256())


def test_rsa_pkcs_decryption_gives_the_plaintext(backed: BackedCard) -> None:
    ciphertext = backed.public_key(2).encrypt(PLAINTEXT, padding.PKCS1v15())
    assert backed.decrypt(backed.pin, "0003", "RSA-PKCS", ciphertext) == PLAINTEXT


def test_rsa_pkcs_oaep_decryption_gives_the_plaintext(backed: BackedCard) -> None:
    ciphertext = backed.public_key(2).encrypt(PLAINTEXT, OAEP)
    plaintext = backed.decrypt(backed.pin, "0003", "RSA-PKCS-OAEP", ciphertext, *OAEP_SHA256)
    assert plaintext == PLAINTEXT


def test_the_card_pin_is_the_backends_secret_with_a_counter_of_its_own(
    backed: BackedCard,
) -> None:
    for _ in range(2):  # the right PIN refills the counter: the second wrong one is again 63C2
        result = backed.run("pkcs11-tool", "--login", "--pin", WRONG_PIN, "-O", check=False)
        assert "CKR_PIN_INCORRECT" in result.stderr
        assert backed.pin_status() == "63C2"
        backed.run("pkcs11-tool", "--login", "--pin", backed.pin, "-O")
        assert backed.pin_status() == "9000"  # verified: pcscd leaves the card powered


@pytest.mark.skipif(
    softhsm_missing(), reason="needs SoftHSM2 (Debian package softhsm2) and python-pkcs11"
)
def test_a_token_without_raw_rsa_signs_and_decrypts_pkcs1_but_not_pss(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path
) -> None:
    # SoftHSM2 2.6.1 ignores the first name of a "-" (disable) list, hence the empty one.
    card, certificates, env = token_backend(tmp_path, mechanisms="-,CKM_RSA_X_509")
    process = opensc.serve(pcscd, card, tmp_path, FALLBACK_SLOT, env=env)
    try:
        backed = BackedCard(
            opensc_env,
            tmp_path,
            FALLBACK_SLOT,
            pcscd.reader_name(FALLBACK_SLOT),
            TOKEN_PIN,
            certificates,
        )
        # A PKCS#1 v1.5 type-1 block is signed with CKM_RSA_PKCS on its payload: exact.
        signature = backed.sign(TOKEN_PIN, "0001", "SHA256-RSA-PKCS", MESSAGE)
        backed.public_key(0).verify(signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        # A type-2 block is decrypted and re-wrapped around the same plaintext.
        ciphertext = backed.public_key(2).encrypt(PLAINTEXT, padding.PKCS1v15())
        assert backed.decrypt(TOKEN_PIN, "0003", "RSA-PKCS", ciphertext) == PLAINTEXT
        # A PSS-encoded block cannot be signed without raw RSA: the card refuses it.
        pss = backed.sign(TOKEN_PIN, "0002", "SHA256-RSA-PKCS-PSS", MESSAGE, check=False)
        assert pss == b""
    finally:
        opensc.stop(pcscd, process, FALLBACK_SLOT)
    assert "token refused the operation" in (tmp_path / "serve.log").read_text()


# -- a card with PIV, EC keys (--profile piv) ------------------------------------------------------

#: The PIV card's PIN (OpenSC's PIV driver pads it with FF to 8 bytes).
PIV_PIN = "123456"
#: OpenSC's PIV key ids: 9A, 9C, 9D.
PIV_IDS = ("01", "02", "03")
#: The keys of the PIV card, in card order: 9A P-256, 9C RSA-2048, 9D P-384.
PIV_KEYS = (("p256", "EC:prime256v1"), ("rsa", "rsa:2048"), ("p384", "EC:secp384r1"))


def profile_missing() -> bool:
    """Whether ``cacard serve-vpcd`` lacks ``--profile`` (a card with PIV from a backend)."""
    usage = subprocess.run(
        opensc.cacard("serve-vpcd", "--help"), capture_output=True, text=True, check=False
    )
    return "--profile" not in usage.stdout


def nss_piv_backend(workdir: Path) -> tuple[list[str], tuple[x509.Certificate, ...]]:
    """A database without password whose keys NSS made (``certutil -S``), for a PIV card."""
    from tests.cacard.nssdb import make_key_in_nss, nss_db

    db = nss_db(workdir / "nssdb", "")
    card = ["--nss", db]
    certificates = []
    for nickname, kind in PIV_KEYS:
        nss_kind = {"EC:prime256v1": "nistp256", "EC:secp384r1": "nistp384"}.get(kind, "rsa")
        make_key_in_nss(db, "", nickname, nss_kind, workdir)
        listed = run("certutil", "-L", "-d", db, "-n", nickname, "-a")
        certificates.append(x509.load_pem_x509_certificate(listed.encode()))
        card += ["--cert", nickname]
    return card, tuple(certificates)


def token_piv_backend(
    workdir: Path,
) -> tuple[list[str], tuple[x509.Certificate, ...], dict[str, str]]:
    """A token whose keys ``pkcs11-tool --keypairgen`` made (never extractable), for a PIV card."""
    env = softhsm_env(workdir / "softhsm")
    run(
        "softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL,
        "--pin", TOKEN_PIN, "--so-pin", SO_PIN, env=env,
    )  # fmt: skip
    tool = ("pkcs11-tool", "--module", SOFTHSM2_MODULE, "--token-label", TOKEN_LABEL)
    login = ("--login", "--pin", TOKEN_PIN)
    certificates = []
    for number, (label, kind) in enumerate(PIV_KEYS, start=1):
        key_id = f"{number:02x}"
        usage = ("--usage-sign", "--usage-derive") if kind.startswith("EC") else ("--usage-sign",)
        run(
            *tool, *login, "--keypairgen", "--key-type", kind, "--id", key_id,
            "--label", label, *usage, env=env,
        )  # fmt: skip
        public_key = token_public_key(tool, key_id, kind, workdir / f"{label}.pub.der", env)
        certificate = issue(public_key, f"vscard token {label}")
        cert_der = workdir / f"{label}.cert.der"
        cert_der.write_bytes(certificate.public_bytes(serialization.Encoding.DER))
        run(
            *tool, *login, "--write-object", cert_der, "--type", "cert", "--id", key_id,
            "--label", label, env=env,
        )  # fmt: skip
        certificates.append(certificate)
    pin_file = workdir / "token-pin"
    pin_file.write_text(TOKEN_PIN + "\n")
    card = ["--pkcs11", SOFTHSM2_MODULE, "--token", TOKEN_LABEL, "--token-pin-file", str(pin_file)]
    return card, tuple(certificates), env


def token_public_key(
    tool: tuple[str, ...], key_id: str, kind: str, der: Path, env: dict[str, str]
) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
    """The public key ``pkcs11-tool`` made. OpenSC 0.23 cannot export a P-384 one (``cannot
    create EVP_PKEY``), so an EC key comes from the ``EC_POINT`` its listing shows."""
    if not kind.startswith("EC:"):
        run(*tool, "--read-object", "--type", "pubkey", "--id", key_id, "-o", der, env=env)
        public = serialization.load_der_public_key(der.read_bytes())
        assert isinstance(public, rsa.RSAPublicKey)
        return public
    listing = run(*tool, "--list-objects", "--type", "pubkey", env=env)
    (block,) = (b for b in listing.split("Public Key Object;") if f"ID:         {key_id}" in b)
    wrapped = bytes.fromhex(block.split("EC_POINT:", 1)[1].split()[0])
    assert wrapped[:1] == b"\x04"  # a DER OCTET STRING of the point, short length
    assert wrapped[1] == len(wrapped) - 2
    curve = {"EC:prime256v1": ec.SECP256R1(), "EC:secp384r1": ec.SECP384R1()}[kind]
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, wrapped[2:])


@pytest.mark.skipif(profile_missing(), reason="cacard serve-vpcd has no --profile yet")
@pytest.mark.parametrize("backend", ["nss", "softhsm2"])
def test_opensc_piv_driver_uses_ec_keys_of_a_backend_with_profile_piv(
    pcscd: Pcscd, opensc_env: dict[str, str], tmp_path: Path, backend: str
) -> None:
    env: dict[str, str] | None = None
    if backend == "nss":
        if shutil.which("certutil") is None:
            pytest.skip("NSS tools are not installed (Debian package libnss3-tools)")
        card, certificates = nss_piv_backend(tmp_path)
    else:
        if softhsm_missing():
            pytest.skip("needs SoftHSM2 (Debian package softhsm2) and python-pkcs11")
        card, certificates, env = token_piv_backend(tmp_path)
    card += ["--profile", "piv", "--pin", PIV_PIN]
    process = opensc.serve(pcscd, card, tmp_path, FALLBACK_SLOT, env=env)
    try:
        piv = Reader(opensc_env, tmp_path, FALLBACK_SLOT, pcscd.reader_name(FALLBACK_SLOT))
        name = piv.run("opensc-tool", "-n").stdout.strip()
        assert name == "Personal Identity Verification Card"
        listing = piv.run("pkcs11-tool", "-O").stdout
        assert listing.count("Certificate Object; type = X.509 cert") == 3
        assert "Public Key Object; EC  EC_POINT 256 bits" in listing
        assert "Public Key Object; EC  EC_POINT 384 bits" in listing

        # ECDSA on 9A: CKM_ECDSA signs the hash it is given; the signature is r || s.
        digest = hashes.Hash(hashes.SHA256())
        digest.update(MESSAGE)
        raw = piv.sign(PIV_PIN, PIV_IDS[0], "ECDSA", digest.finalize())
        assert len(raw) == 64
        signature = encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )
        p256 = certificates[0].public_key()
        assert isinstance(p256, ec.EllipticCurvePublicKey)
        p256.verify(signature, MESSAGE, ec.ECDSA(hashes.SHA256()))

        # ECDSA with OpenSC hashing, as DER. (OpenSC gives 9D, key management, no signing.)
        der = piv.sign(PIV_PIN, PIV_IDS[0], "ECDSA-SHA256", MESSAGE, "-f", "sequence")
        p256.verify(der, MESSAGE, ec.ECDSA(hashes.SHA256()))

        # RSA on 9C beside them.
        rsa_signature = piv.sign(PIV_PIN, PIV_IDS[1], "SHA256-RSA-PKCS", MESSAGE)
        rsa_key = certificates[1].public_key()
        assert isinstance(rsa_key, rsa.RSAPublicKey)
        rsa_key.verify(rsa_signature, MESSAGE, padding.PKCS1v15(), hashes.SHA256())

        # ECDH on 9D with a host key: the secret OpenSC derives is cryptography's.
        p384 = certificates[2].public_key()
        assert isinstance(p384, ec.EllipticCurvePublicKey)
        host = ec.generate_private_key(ec.SECP384R1())
        peer = tmp_path / "peer.der"
        peer.write_bytes(
            host.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        secret = tmp_path / "secret"
        piv.run(
            "pkcs11-tool", "--login", "--pin", PIV_PIN, "--derive", "-m", "ECDH1-DERIVE",
            "--id", PIV_IDS[2], "-i", str(peer), "-o", str(secret),
        )  # fmt: skip
        assert secret.read_bytes() == host.exchange(ec.ECDH(), p384)
    finally:
        opensc.stop(pcscd, process, FALLBACK_SLOT)
