"""PIV cards for the interop tests: ``cacard new --profile piv|cac+piv`` directories served to the
private pcscd, yubico-piv-tool pointed at one vpcd reader, and checks of what the PIV tools get
back (signatures and ECDH secrets recomputed with ``cryptography``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from smartcard.CardConnection import CardConnection
from smartcard.System import readers

from cacard.store import CardStore
from tests.cacard.certificates import issue

from .opensc import Reader, cacard

#: The card PIN and PUK of every card made here.
PIN = "77777777"
PUK = "12345678"
#: ``cacard new``'s ATR for each profile here, named explicitly: yubico-piv-tool connects with
#: T=1 only (lib/ykpiv.c, ykpiv_connect), so the card must offer it.
ATRS: Mapping[str, str] = {"piv": "piv", "cac+piv": "cac-t1"}
#: pkcs11-tool's object id of each PIV key reference (OpenSC, pkcs15-piv.c: 01-04 for 9A-9E).
KEY_IDS: Mapping[str, str] = {"9a": "01", "9c": "02", "9d": "03", "9e": "04"}
PIV_AID = bytes.fromhex("A000000308")
YUBICO_PIV_TOOL = "yubico-piv-tool"


def missing_yubico_piv_tool() -> bool:
    return shutil.which(YUBICO_PIV_TOOL) is None


def make_card(directory: Path, profile: str, *extra: str) -> CardStore:
    """``cacard new DIR --profile PROFILE`` with the profile's T=1 ATR, :data:`PIN` and
    :data:`PUK`."""
    argv = cacard("new", str(directory), "--profile", profile, "--pin", PIN, "--puk", PUK)
    argv += ["--atr", ATRS[profile], *extra]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return CardStore(directory)


@dataclass
class PivReader(Reader):
    """OpenSC's tools and yubico-piv-tool on one vpcd reader."""

    def yubico(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run yubico-piv-tool on this reader (its default reader filter is "Yubikey")."""
        command = (YUBICO_PIV_TOOL, "-r", self.reader, *argv)
        result = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode:
            pytest.fail(
                f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def certificate(self, key_id: str) -> x509.Certificate:
        """The certificate of ``key_id`` as OpenSC's PIV driver reads it from the card."""
        out = self.run("pkcs15-tool", "--read-certificate", key_id).stdout
        return x509.load_pem_x509_certificate(out.encode())

    def derive(self, key_id: str, peer: ec.EllipticCurvePublicKey) -> bytes:
        """``pkcs11-tool --derive -m ECDH1-DERIVE``: the card's ECDH secret with ``peer``."""
        source, target = self.workdir / "peer.der", self.workdir / "secret"
        source.write_bytes(
            peer.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        target.unlink(missing_ok=True)
        self.run(
            "pkcs11-tool", "--login", "--pin", PIN, "--derive", "-m", "ECDH1-DERIVE",
            "--id", key_id, "--input-file", str(source), "-o", str(target),
        )  # fmt: skip
        return target.read_bytes()

    def piv_select_gaps(self) -> list[str]:
        """What this card answers unlike a PIV card under T=1 as yubico-piv-tool uses it
        (empty when nothing): it sends every command without Le and reads the answer of
        SELECT and of the 9B witness as they come (lib/ykpiv.c, _ykpiv_select_application,
        _ykpiv_authenticate), and after a SELECT of an AID the card lacks (the YubiKey OTP
        application, _ykpiv_get_serial) it goes on with the PIV application."""
        (reader,) = [r for r in readers() if str(r) == self.reader]
        connection = reader.createConnection()
        connection.connect(CardConnection.T1_protocol)
        gaps = []
        try:
            select = [0x00, 0xA4, 0x04, 0x00, len(PIV_AID), *PIV_AID]
            _, sw1, sw2 = connection.transmit(select)
            if (sw1, sw2) != (0x90, 0x00):
                gaps.append(f"SELECT without Le answers {sw1:02X}{sw2:02X}, not 9000 and the FCI")
            otp = bytes.fromhex("A0000005272001 01".replace(" ", ""))
            connection.transmit([0x00, 0xA4, 0x04, 0x00, len(otp), *otp])
            discovery = [0x00, 0xCB, 0x3F, 0xFF, 0x03, 0x5C, 0x01, 0x7E, 0x00]
            _, sw1, sw2 = connection.transmit(discovery)
            if sw1 not in (0x90, 0x61):
                gaps.append(f"a failed SELECT deselects PIV (GET DATA then: {sw1:02X}{sw2:02X})")
        finally:
            connection.disconnect()
        return gaps


def issue_pem(public_pem: bytes, common_name: str) -> bytes:
    """A test CA's certificate for a public key in PEM, in PEM (for import-certificate)."""
    public_key = serialization.load_pem_public_key(public_pem)
    assert isinstance(public_key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    return issue(public_key, common_name).public_bytes(serialization.Encoding.PEM)


def verify(certificate: x509.Certificate, signature: bytes, message: bytes, mechanism: str) -> None:
    """Check what pkcs11-tool's ``mechanism`` made of ``message`` against ``certificate``.

    pkcs11-tool writes ECDSA signatures as r||s (PKCS#11) and PSS with MGF1 and a salt as
    long as the digest (its defaults).
    """
    public = certificate.public_key()
    digest: hashes.HashAlgorithm = hashes.SHA384() if "SHA384" in mechanism else hashes.SHA256()
    if isinstance(public, ec.EllipticCurvePublicKey):
        half = len(signature) // 2
        der = utils.encode_dss_signature(
            int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
        )
        public.verify(der, message, ec.ECDSA(digest))
    elif isinstance(public, rsa.RSAPublicKey):
        if mechanism.endswith("-PSS"):
            pss = padding.PSS(padding.MGF1(digest), digest.digest_size)
            public.verify(signature, message, pss, digest)
        else:
            public.verify(signature, message, padding.PKCS1v15(), digest)
    else:
        raise AssertionError(f"unexpected key {public!r}")
