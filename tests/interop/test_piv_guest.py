"""A ``cac+piv`` card in the Linux guest: OpenSC binds it with its PIV driver, lists what the
card holds, and signs (SHA256-RSA-PKCS with PIV Authentication, ECDSA with the P-256 Digital
Signature key); the host verifies each signature against the card's certificate.

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

from cacard.keys import Credential, ECCardKey
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


#: ``cacard new`` options of the test card: a P-256 Digital Signature key (9C) for ECDSA beside
#: the RSA-2048 ones; the rest are its defaults (PIN 77777777).
NEW_CARD = ("--profile", "cac+piv", "--key", "9c=p256")


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
    signature_key = card.piv_credentials[KeyReference.DIGITAL_SIGNATURE].key
    assert isinstance(signature_key, ECCardKey), f"9C is not an EC key: {signature_key}"
    return card


def _mechanism(credential: Credential) -> str:
    return "ECDSA" if isinstance(credential.key, ECCardKey) else "SHA256-RSA-PKCS"


def signing_keys(card: PivCard) -> dict[str, KeyReference]:
    """Check name -> key: PIV Authentication, and every other EC key (for ECDSA)."""
    chosen = {
        reference: held
        for reference, held in card.piv_credentials.items()
        if reference is KeyReference.PIV_AUTHENTICATION or isinstance(held.key, ECCardKey)
    }
    return {
        checks.sign_for_host(_mechanism(held), key_id=OPENSC_KEY_IDS[reference]).name: reference
        for reference, held in chosen.items()
    }


def piv_checks(card: PivCard) -> list[Check]:
    """Everything one boot verifies: reader, ATR, driver, objects, the signatures."""
    held = card.piv_credentials
    ec_keys = sum(isinstance(credential.key, ECCardKey) for credential in held.values())
    signatures = [
        checks.sign_for_host(_mechanism(held[reference]), key_id=OPENSC_KEY_IDS[reference])
        for reference in signing_keys(card).values()
    ]
    return [
        checks.reader_listed(),
        checks.atr(card.profile.atr),
        checks.card_driver(checks.PIV_DRIVER),
        checks.pkcs15_objects(
            len(held), len(held) - ec_keys, private_ec_keys=ec_keys, names=PKCS15_PIV
        ),
        checks.pkcs11_objects(len(held), len(held)),
        *signatures,
    ]


def verify_signatures(result: GuestResult, card: PivCard) -> None:
    """Verify each signature the guest brought back with ``cryptography``, against the
    certificate the card directory holds for that key (which the guest must have read too)."""
    for name, reference in signing_keys(card).items():
        signed = checks.signed_in_guest(result[name].output)
        certificate = card.piv_credentials[reference].certificate
        assert signed.certificate == certificate.public_bytes(serialization.Encoding.DER), name
        assert x509.load_der_x509_certificate(signed.certificate) == certificate
        signed.verify(certificate.public_key())  # raises InvalidSignature


async def test_cac_piv_through_ccid_passthru(start_guest: StartGuest, piv_card: PivCard) -> None:
    async with running_passthru() as passthru:
        args = ["--card", str(piv_card.directory), "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            await client.event("vscard.reader_added")  # the host accepted the reader
            async with start_guest(
                UsbipSetup(passthru.usbip_port, BUSID), piv_checks(piv_card), timeout=150
            ) as guest:
                result = await guest.wait()
    assert result.passed, result.report()
    verify_signatures(result, piv_card)


async def test_cac_piv_through_qemu_passthru(start_guest: StartGuest, piv_card: PivCard) -> None:
    async with start_guest(PassthruSetup(), piv_checks(piv_card), timeout=150) as guest:
        assert guest.passthru_port is not None
        args = ["--card", str(piv_card.directory), "127.0.0.1", str(guest.passthru_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            result = await guest.wait()
    assert result.passed, result.report()
    verify_signatures(result, piv_card)
