"""The end-to-end demo: a fresh emulated card (the one ``cacard new`` makes: a CAC with PIV
beside it), our vscclient, our ccid-passthru, and a Linux guest that attaches the exported reader
over USB/IP and uses the card with OpenSC's PIV driver.

    vscclient --card DIR  --VSCard-->  ccid-passthru  --USB/IP-->  guest: usbip attach,
                                                                   pcscd + libccid, OpenSC

Run it with ``scripts/demo`` (which installs what it needs), or ``python -m
examples.end_to_end_demo`` from the repository root. It says what happens at each step.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import structlog

from cacard import CardRequest, generate_card
from cacard.profile import PIV_KEYS, Applications
from tests.daemons.passthru_process import running_passthru
from tests.interop.guest import checks
from tests.interop.guest.image import build_image
from tests.interop.guest.result import GuestResult
from tests.interop.guest.runner import UsbipSetup, run_guest
from tests.interop.our_vscclient import running_vscclient

#: What ``cacard new`` makes by default (cacard, cli.py, ``_new``): a CAC with PIV beside it,
#: and a certificate for each PIV key (9A, 9C, 9D, 9E), RSA-2048, PIN 77777777.
CARD = CardRequest(applications=Applications.CAC_PIV, certificates=len(PIV_KEYS))

#: The PKCS#11 IDs OpenSC's PIV driver gives the keys: 01 PIV Authentication (9A), 03 Key
#: Management (9D), the key a PIV card decrypts with (OpenSC, pkcs15-piv.c, the key table).
SIGNING_KEY_ID = "01"
DECRYPTION_KEY_ID = "03"

WHAT = {
    "setup.usbip-attach": "usbip attach imported the reader over the network",
    "setup.ccid-device": "the guest's kernel sees a USB smart-card reader",
    "setup.pcscd": "pcscd (with libccid) started",
    "reader-listed": "OpenSC lists the reader",
    "atr": "the card answers to reset (ATR)",
    "card-driver": "OpenSC binds its PIV driver: a PIV card, as Windows and macOS use it",
    "pkcs15-objects": "pkcs15-tool finds the four certificates and keys",
    "pkcs11-objects": "pkcs11-tool lists the objects after login",
    f"sign.SHA256-RSA-PKCS.id{SIGNING_KEY_ID}": (
        "the card signed (SHA256-RSA-PKCS, PIV Authentication key) and openssl verified it"
    ),
    f"decrypt.RSA-PKCS.id{DECRYPTION_KEY_ID}": (
        "the card decrypted a message encrypted to its Key Management certificate"
    ),
}


def say(text: str) -> None:
    print(text, flush=True)


def show(result: GuestResult) -> bool:
    for check in result.checks:
        if check.name not in WHAT:
            continue
        mark = "ok " if check.passed else "FAILED"
        say(f"   [{mark}] {WHAT[check.name]}")
        if check.name in ("card-driver", "atr") or not check.passed:
            for line in check.output.strip().splitlines()[-3 if check.passed else -15 :]:
                say(f"           {line}")
    return result.passed


async def demo() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vscard-demo-") as scratch:
        card_dir = Path(scratch) / "card"
        say("1. Making a fresh test card, as `cacard new` does: a CAC with PIV beside it,")
        say("   a CA and four certificates (PIV Authentication, Digital Signature, Key")
        say("   Management, Card Authentication) with RSA-2048 keys, PIN 77777777,")
        say(f"   in {card_dir}")
        await asyncio.to_thread(generate_card, card_dir, CARD)

        say("2. Preparing the test guest: Debian's kernel with vhci-hcd, usbip, pcscd,")
        say("   libccid and OpenSC (built once, then cached)")
        image = await asyncio.to_thread(build_image)

        async with running_passthru() as passthru:
            say("3. ccid-passthru is listening:")
            say(f"   VSCard clients on 127.0.0.1:{passthru.vscard_port},")
            say(f"   USB/IP importers on 127.0.0.1:{passthru.usbip_port}")
            args = ["--card", str(card_dir), "127.0.0.1", str(passthru.vscard_port)]
            async with running_vscclient(args) as client:
                await client.event("vscard.reader_added")
                say("4. vscclient connected with the card: ccid-passthru now exports it as a")
                say("   USB CCID reader, bus id 1-1 (what `usbip list -r` shows)")
                say("5. Booting a Linux guest (QEMU, software emulation) that attaches the reader")
                say("   from the host (10.0.2.2) and uses the card with OpenSC:")
                result = await run_guest(
                    image,
                    UsbipSetup(passthru.usbip_port, "1-1"),
                    [
                        checks.reader_listed(),
                        checks.atr(CARD.applications.default_atr),
                        checks.card_driver(checks.PIV_DRIVER),
                        checks.pkcs15_objects(CARD.certificates, CARD.certificates),
                        checks.sign_verify("SHA256-RSA-PKCS", key_id=SIGNING_KEY_ID),
                        checks.decrypt(key_id=DECRYPTION_KEY_ID),
                    ],
                    timeout=180,
                )
                passed = show(result)
                say("6. Stopping vscclient: it removes its card and reader, and ccid-passthru")
                say("   unplugs the USB device")
                await client.command("exit")
                await client.wait()
            say("7. Stopping ccid-passthru")
    seconds = time.monotonic() - started
    if passed:
        say(f"Done in {seconds:.0f} s: the guest used the card end to end.")
        return 0
    say(f"The demo FAILED after {seconds:.0f} s; the guest's report:")
    say(result.report())
    return 1


def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(asyncio.run(demo()))


if __name__ == "__main__":
    main()
