"""A guest and a host application use the same real card at once (issue 16).

The card is a ``cacard serve-vpcd`` CAC card in the host's private pcscd; our ``vscclient
--pcsc`` forwards it to the guest, through real QEMU 7.2 (usb-ccid + ccid-card-passthru) or
through our ccid-passthru (USB/IP), as a CAC card (OpenSC's CAC driver) and as a CAC+PIV card
(its PIV driver): four boots. While the guest's OpenSC runs its whole sequence (list, PIN,
sign, decrypt), a host thread signs with ``pkcs11-tool`` on the same card in a loop, each
signature verified. Both must succeed throughout; the counts are printed (``-s``).

vscclient runs with ``-d 1``: its ``pcsc.guest_gap`` events are the gaps between the guest's
APDUs, which ``--pcsc-hold`` must cover within one operation.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cacard import CardRequest, generate_card
from cacard.profile import Applications
from tests.daemons.passthru_process import running_passthru
from tests.interop.guest import checks
from tests.interop.guest.runner import PassthruSetup, UsbipSetup

from . import opensc
from .our_vscclient import VscclientProcess, running_vscclient
from .pcsc import fixtures as pcsc_fixtures
from .pcsc.pcscd import Pcscd

if TYPE_CHECKING:  # the fixtures module is a plugin: importing it first defeats assert rewriting
    from tests.interop.guest.fixtures import StartGuest

pytest_plugins = ("tests.interop.guest.fixtures",)

pytestmark = pytest.mark.interop

pcscd = pcsc_fixtures.pcscd
opensc_env = opensc.opensc_env

PIN = "77777777"
BUSID = "1-1"


@dataclass(frozen=True)
class CardKind:
    """A card the guest uses: its OpenSC checks, and the key ID the host application signs
    with (OpenSC's ID of the first certificate's key)."""

    name: str
    applications: Applications
    host_key_id: str

    def guest_checks(self) -> list[checks.Check]:
        if self.applications is Applications.CAC:
            return [
                *checks.standard_card_checks(),
                checks.decrypt(key=3),  # cacard new: the third certificate encrypts
                checks.sign_verify("SHA256-RSA-PKCS", key=2),
            ]
        # OpenSC's PIV driver: IDs 01, 02, 03 for 9A, 9C, 9D (OpenSC, pkcs15-piv.c).
        return [
            checks.reader_listed(),
            checks.atr(),
            checks.card_driver(checks.PIV_DRIVER),
            checks.pkcs15_objects(3, 3),
            checks.pkcs11_slots(),
            checks.pkcs11_objects(3, 3),
            checks.sign_verify("SHA256-RSA-PKCS", key_id="01"),
            checks.decrypt(key_id="03"),
            checks.sign_verify("SHA256-RSA-PKCS", key_id="02"),
        ]


#: OpenSC's CAC driver, and its PIV driver (which re-selects the PIV application whenever it
#: gets the card back: OpenSC, card-piv.c, piv_card_reader_lock_obtained).
CARDS = [
    CardKind("cac", Applications.CAC, "0001"),
    CardKind("piv", Applications.CAC_PIV, "01"),
]


@pytest.fixture(scope="module", params=CARDS, ids=[card.name for card in CARDS])
def shared_card(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CardKind, Path]:
    kind: CardKind = request.param
    directory = tmp_path_factory.mktemp(kind.name) / "card"
    generate_card(directory, CardRequest(applications=kind.applications))
    return kind, directory


@dataclass
class HostSigner:
    """``pkcs11-tool --sign`` on the host's reader in a loop, each signature verified."""

    reader: opensc.Reader
    public_key: rsa.RSAPublicKey
    key_id: str
    signed: int = 0
    times: list[float] = field(default_factory=list)
    """When each verified signature was made (seconds since the epoch)."""
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            data = f"host signature {self.signed}".encode()
            result = self.reader.run(
                "pkcs11-tool", "--login", "--pin", PIN, "--sign", "--id", self.key_id,
                "-m", "SHA256-RSA-PKCS", "-i", str(self._write(data)),
                "-o", str(self.reader.workdir / "sig"), check=False,
            )  # fmt: skip
            signature = (self.reader.workdir / "sig").read_bytes() if not result.returncode else b""
            try:
                self.public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except Exception as error:  # a failure to count and report
                self.failures.append(f"{result.returncode} {error!r}: {result.stderr[-400:]}")
            else:
                self.signed += 1
                self.times.append(time.time())

    def _write(self, data: bytes) -> Path:
        path = self.reader.workdir / "in"
        path.write_bytes(data)
        (self.reader.workdir / "sig").unlink(missing_ok=True)
        return path


@asynccontextmanager
async def served_card(
    pcscd: Pcscd, card: tuple[CardKind, Path], workdir: Path, env: dict[str, str]
) -> AsyncIterator[tuple[str, HostSigner]]:
    kind, card_dir = card
    process = await asyncio.to_thread(opensc.serve, pcscd, [str(card_dir)], workdir, 0)
    try:
        reader = pcscd.reader_name(0)
        certificate = x509.load_pem_x509_certificate((card_dir / "cert-1.pem").read_bytes())
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        yield reader, HostSigner(opensc.Reader(env, workdir, 0, reader), key, kind.host_key_id)
    finally:
        await asyncio.to_thread(opensc.stop, pcscd, process, 0)


@asynccontextmanager
async def signing(signer: HostSigner) -> AsyncIterator[HostSigner]:
    thread = threading.Thread(target=signer.run, name="host-signer", daemon=True)
    thread.start()
    try:
        yield signer
    finally:
        signer.stop.set()
        await asyncio.to_thread(thread.join, 120)


#: SELECT by AID: where an OpenSC process (or a new card session) starts.
SELECT_AID = "00a40400"


@dataclass
class Trace:
    """What vscclient's ``-d 1`` log says about the guest's use of the card."""

    gaps: list[tuple[float, str]] = field(default_factory=list)
    """Each gap (ms) between guest APDUs, with the commands on either side."""
    waits: list[float] = field(default_factory=list)
    """How long (ms) each new transaction waited for the card."""
    busy: int = 0
    """Guest APDUs answered 6F00 (the card did not come in time)."""
    first: float = 0.0
    last: float = 0.0
    """When the guest sent its first and its last APDU (seconds since the epoch)."""

    def read(self, client: VscclientProcess) -> None:
        commands = ["", ""]
        while not client.events.empty():
            event: dict[str, Any] = client.events.get_nowait()
            name = event.get("event")
            if name == "vscard.apdu" and "command" in event:
                commands = [commands[1], str(event["command"])[:40]]
                when = datetime.fromisoformat(str(event["timestamp"])).timestamp()
                self.first = self.first or when
                self.last = when
            elif name == "pcsc.guest_gap":
                self.gaps.append((float(event["ms"]), f"{commands[0]} -> {commands[1]}"))
            elif name == "pcsc.transaction_begun":
                self.waits.append(float(event["waited_ms"]))
            elif name == "pcsc.card_busy":
                self.busy += 1

    def report(self, path: str, signer: HostSigner, guest_checks: int) -> str:
        values = sorted(gap for gap, _ in self.gaps)
        quantiles = statistics.quantiles(values, n=100)
        # Within an operation: every gap but those before a SELECT of an application.
        inside = max(
            gap for gap, where in self.gaps if not where.split(" -> ")[1].startswith(SELECT_AID)
        )
        large = [f"{gap:.0f} ms ({where})" for gap, where in self.gaps if gap > 100]
        return "\n".join(
            [
                f"{path}: guest passed {guest_checks} checks; host signed {signer.signed} "
                f"(verified), failed {len(signer.failures)}; guest APDUs refused busy {self.busy}",
                f"{path}: while the guest used the card ({self.last - self.first:.1f} s from its "
                f"first APDU to its last) the host signed "
                f"{sum(self.first <= t <= self.last for t in signer.times)}",
                f"{path}: {len(self.waits)} guest transactions, waited for the card: "
                f"median {statistics.median(self.waits):.0f} ms, max {max(self.waits):.0f} ms",
                f"{path}: {len(values)} gaps between guest APDUs: "
                f"median {statistics.median(values):.1f} ms, p95 {quantiles[94]:.1f} ms, "
                f"p99 {quantiles[98]:.1f} ms, max {values[-1]:.1f} ms; largest not before "
                f"a SELECT by AID {inside:.1f} ms",
                f"{path}: gaps over 100 ms:",
                *large,
            ]
        )


async def test_qemu_guest_and_host_application_share_the_card(
    start_guest: StartGuest,
    pcscd: Pcscd,
    opensc_env: dict[str, str],
    shared_card: tuple[CardKind, Path],
    tmp_path: Path,
) -> None:
    kind = shared_card[0]
    async with (
        served_card(pcscd, shared_card, tmp_path, opensc_env) as (reader, signer),
        start_guest(PassthruSetup(), kind.guest_checks(), timeout=300) as guest,
    ):
        assert guest.passthru_port is not None
        args = ["-d", "1", f"--pcsc={reader}", "127.0.0.1", str(guest.passthru_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            async with signing(signer):
                result = await guest.wait()
            trace = Trace()
            trace.read(client)
    counts = trace.report(f"qemu {kind.name}", signer, len(result.checks))
    print("\n" + counts)  # noqa: T201 - the counts for the record, with -s
    assert result.passed, result.report()
    assert signer.signed > 0
    assert not signer.failures, signer.failures[:3]


async def test_ccid_passthru_guest_and_host_application_share_the_card(
    start_guest: StartGuest,
    pcscd: Pcscd,
    opensc_env: dict[str, str],
    shared_card: tuple[CardKind, Path],
    tmp_path: Path,
) -> None:
    kind = shared_card[0]
    async with (
        served_card(pcscd, shared_card, tmp_path, opensc_env) as (reader, signer),
        running_passthru() as passthru,
    ):
        args = ["-d", "1", f"--pcsc={reader}", "127.0.0.1", str(passthru.vscard_port)]
        async with running_vscclient(args) as client:
            await client.event("vscclient.connected")
            await client.event("vscard.reader_added")
            async with (
                start_guest(
                    UsbipSetup(passthru.usbip_port, BUSID), kind.guest_checks(), timeout=300
                ) as guest,
                signing(signer),
            ):
                result = await guest.wait()
            trace = Trace()
            trace.read(client)
    counts = trace.report(f"ccid-passthru {kind.name}", signer, len(result.checks))
    print("\n" + counts)  # noqa: T201 - the counts for the record, with -s
    assert result.passed, result.report()
    assert signer.signed > 0
    assert not signer.failures, signer.failures[:3]
