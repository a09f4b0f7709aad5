"""A ``cac+piv`` card in the Linux guest: OpenSC binds it with its PIV driver, lists what the
card holds (an RSA-2048 PIV Authentication key, P-256 Digital Signature, P-384 Key Management
and Card Authentication keys, four certificates), signs SHA256-RSA-PKCS and SHA256-RSA-PKCS-PSS
with PIV Authentication, ECDSA with Digital Signature and ECDSA-SHA384 with Card
Authentication, and derives an ECDH secret with Key Management and a public key the host made.
The host verifies each signature against the card's certificate, and the secret against its own.

One guest boot per path, every check in it:

* our ``ccid-passthru`` (USB/IP; the guest's vhci-hcd + ``usbip attach``), fed by our
  ``vscclient --card DIR``;
* QEMU 7.2's ``usb-ccid`` + ``ccid-card-passthru``, fed by our ``vscclient --card DIR``.

OpenSC tries its PIV driver before its CAC driver (OpenSC, ctx.c, ``internal_card_drivers``),
so a card that answers the PIV SELECT is a PIV card to it, whatever the protocol: the card's
ATR offers T=1 as well, which pcscd takes on our reader, while QEMU's usb-ccid is T=0 only.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cacard.keys import Credential, ECCardKey, key_description
from cacard.piv.objects import KeyReference
from cacard.profile import PIV_KEYS, CardProfile
from cacard.store import CardStore
from tests.daemons.passthru_process import running_passthru
from tests.interop.guest import checks
from tests.interop.guest.checks import Check
from tests.interop.guest.result import GuestResult
from tests.interop.guest.runner import PassthruSetup, UsbipSetup

from .our_vscclient import ROOT, running_vscclient

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import StartGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

BUSID = "1-1"  # the first reader ccid-passthru exports

#: The PKCS#11 ID OpenSC gives each PIV key's objects (OpenSC, pkcs15-piv.c, the certificate
#: and key tables).
OPENSC_KEY_IDS = {
    KeyReference.PIV_AUTHENTICATION: "01",
    KeyReference.DIGITAL_SIGNATURE: "02",
    KeyReference.KEY_MANAGEMENT: "03",
    KeyReference.CARD_AUTHENTICATION: "04",
}

#: How ``pkcs15-tool -D`` names the PIV driver's PKCS#15 emulation (OpenSC, pkcs15-piv.c).
PKCS15_PIV = "Manufacturer ID: piv_II"


#: ``cacard new`` options of the test card: RSA-2048 PIV Authentication (9A), a P-256 Digital
#: Signature key (9C), P-384 Key Management (9D) and Card Authentication (9E) keys; the rest are
#: its defaults (four certificates with PIV, PIN 77777777).
NEW_CARD = ("--profile", "cac+piv", "--key", "9c=p256", "--key", "9d=p384", "--key", "9e=p384")

#: The key each card key must be, as ``key_description`` says it.
KEY_KINDS = {
    KeyReference.PIV_AUTHENTICATION: "RSA-2048",
    KeyReference.DIGITAL_SIGNATURE: "P-256",
    KeyReference.KEY_MANAGEMENT: "P-384",
    KeyReference.CARD_AUTHENTICATION: "P-384",
}


@dataclass(frozen=True)
class Signing:
    """One signature the guest makes and the host verifies."""

    reference: KeyReference
    mechanism: str

    def check(self) -> Check:
        return checks.sign_for_host(self.mechanism, key_id=OPENSC_KEY_IDS[self.reference])


SIGNINGS = (
    Signing(KeyReference.PIV_AUTHENTICATION, "SHA256-RSA-PKCS"),
    # A PIV card does raw RSA only: OpenSC pads PSS (MGF1-SHA256, a 32-byte salt) itself.
    Signing(KeyReference.PIV_AUTHENTICATION, "SHA256-RSA-PKCS-PSS"),
    Signing(KeyReference.DIGITAL_SIGNATURE, "ECDSA"),  # over a SHA-256 hash made in the guest
    # OpenSC hashes; pkcs11-tool logs in although the card asks no PIN for this key.
    Signing(KeyReference.CARD_AUTHENTICATION, "ECDSA-SHA384"),
)

#: The key the guest derives an ECDH secret with.
ECDH_KEY = KeyReference.KEY_MANAGEMENT


@dataclass(frozen=True)
class PivCard:
    directory: Path
    profile: CardProfile

    @property
    def piv_credentials(self) -> dict[KeyReference, Credential]:
        """What the PIV application holds: the first credentials, in key order."""
        return dict(zip(PIV_KEYS, self.profile.credentials, strict=False))


@pytest.fixture(scope="module")
def piv_card(tmp_path_factory: pytest.TempPathFactory) -> PivCard:
    """``cacard new DIR NEW_CARD``, and what the card holds, read from its directory."""
    directory = tmp_path_factory.mktemp("cards") / "cac-piv"
    made = subprocess.run(
        [sys.executable, "-m", "cacard", "new", str(directory), *NEW_CARD],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    card = PivCard(directory, CardStore(directory).load_profile())
    kinds = {ref: key_description(held.key) for ref, held in card.piv_credentials.items()}
    assert kinds == KEY_KINDS
    return card


@pytest.fixture(scope="module")
def peer_key(piv_card: PivCard) -> ec.EllipticCurvePrivateKey:
    """The host's side of the ECDH: a fresh key on the curve of the card's key."""
    card_key = piv_card.piv_credentials[ECDH_KEY].key
    assert isinstance(card_key, ECCardKey), f"{ECDH_KEY:02X} is not an EC key: {card_key}"
    return ec.generate_private_key(card_key.public_key.curve)


def piv_checks(card: PivCard, peer: ec.EllipticCurvePrivateKey) -> list[Check]:
    """Everything one boot verifies: reader, ATR, driver, objects, the signatures, the ECDH."""
    held = card.piv_credentials
    ec_keys = sum(isinstance(credential.key, ECCardKey) for credential in held.values())
    peer_der = peer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return [
        checks.reader_listed(),
        checks.atr(card.profile.atr),
        checks.card_driver(checks.PIV_DRIVER),
        checks.pkcs15_objects(
            len(held), len(held) - ec_keys, private_ec_keys=ec_keys, names=PKCS15_PIV
        ),
        checks.pkcs11_objects(len(held), len(held)),
        *(signing.check() for signing in SIGNINGS),
        checks.derive_for_host(peer_der, key_id=OPENSC_KEY_IDS[ECDH_KEY]),
    ]


def _certificate_read(guest_der: bytes, certificate: x509.Certificate, name: str) -> None:
    """The guest read ``certificate``, the card directory's, from the card."""
    assert guest_der == certificate.public_bytes(serialization.Encoding.DER), name
    assert x509.load_der_x509_certificate(guest_der) == certificate


def verify_results(result: GuestResult, card: PivCard, peer: ec.EllipticCurvePrivateKey) -> None:
    """Verify each signature the guest brought back with ``cryptography``, against the
    certificate the card directory holds for that key (which the guest must have read too),
    and the guest's ECDH secret against the host's."""
    for signing in SIGNINGS:
        name = signing.check().name
        signed = checks.signed_in_guest(result[name].output)
        certificate = card.piv_credentials[signing.reference].certificate
        _certificate_read(signed.certificate, certificate, name)
        signed.verify(certificate.public_key())  # raises InvalidSignature
    name = checks.derive_for_host(b"", key_id=OPENSC_KEY_IDS[ECDH_KEY]).name
    derived = checks.derived_in_guest(result[name].output)
    certificate = card.piv_credentials[ECDH_KEY].certificate
    _certificate_read(derived.certificate, certificate, name)
    derived.verify(peer, certificate.public_key())  # raises ValueError


async def test_cac_piv_through_ccid_passthru(
    start_guest: StartGuest, piv_card: PivCard, peer_key: ec.EllipticCurvePrivateKey
) -> None:
    async with running_passthru() as passthru:
        args = ["--card", str(piv_card.directory), "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            await client.event("vscard.reader_added")  # the host accepted the reader
            async with start_guest(
                UsbipSetup(passthru.usbip_port, BUSID), piv_checks(piv_card, peer_key), timeout=150
            ) as guest:
                result = await guest.wait()
    assert result.passed, result.report()
    verify_results(result, piv_card, peer_key)


async def test_cac_piv_through_qemu_passthru(
    start_guest: StartGuest, piv_card: PivCard, peer_key: ec.EllipticCurvePrivateKey
) -> None:
    async with start_guest(PassthruSetup(), piv_checks(piv_card, peer_key), timeout=150) as guest:
        assert guest.passthru_port is not None
        args = ["--card", str(piv_card.directory), "127.0.0.1", str(guest.passthru_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            result = await guest.wait()
    assert result.passed, result.report()
    verify_results(result, piv_card, peer_key)
