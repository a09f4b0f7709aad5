"""The three ways to give the test guest a reader, and the QEMU command line for each.

* :class:`PassthruSetup` (a): QEMU's ``usb-ccid`` with ``ccid-card-passthru`` on a loopback TCP
  port; a VSCard client (ours) connects there and supplies the card.
* :class:`EmulatedSetup` (b): ``usb-ccid`` with ``ccid-card-emulated`` over an NSS DB: QEMU's own
  libcacard CAC card, the known-good reference.
* :class:`UsbipSetup` (c): no QEMU reader; the guest ``usbip attach``-es a device from a USB/IP
  server on the host.

And one helper for (c): :class:`UsbipExportSetup` makes a guest a *reference USB/IP server*: the
emulated card of (b), bound to ``usbip-host`` and served by the guest's ``usbipd``, reachable
from the host through a QEMU port forward. A (c) guest can attach it like any server's device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import checks as ck
from .checks import Check
from .image import FW_CFG_SCRIPT, GuestImage

QEMU = "qemu-system-x86_64"
MEMORY_MB = 512

#: Kernel command line: serial console, few kernel messages, a panic ends QEMU (-no-reboot).
KERNEL_ARGS = "console=ttyS0 quiet panic=-1 mitigations=off"

CARD_ID = "card0"
READER_ID = "ccid0"
USBIP_PORT = 3240

Controller = Literal["uhci", "xhci"]
"""The USB host controller for usb-ccid. Use ``uhci``: with ``xhci`` QEMU 7.2's usb-ccid answers
short (pcscd: "Not enough data received: 2 bytes", then OpenSC: "Unsupported card"), which fits
its stray zero-length packet after 64-byte messages (QEMU's ``hw/usb/dev-smartcard-reader.c``,
``ccid_bulk_in_get``)."""
CONTROLLERS: Mapping[str, str] = {"uhci": "piix3-usb-uhci", "xhci": "qemu-xhci"}


@dataclass(frozen=True)
class PassthruSetup:
    """(a) ``usb-ccid`` + ``ccid-card-passthru`` listening on ``127.0.0.1:port``.

    ``port`` 0 lets QEMU pick a free one; :attr:`Guest.passthru_port` tells which. With
    ``tls_dir`` (QEMU's tls-creds-x509 layout: ca-cert.pem, server-cert.pem, server-key.pem) the
    chardev speaks TLS and requires a client certificate (``verify-peer=on``).
    """

    port: int = 0
    tls_dir: Path | None = None
    name: str = field(default="passthru", init=False)


@dataclass(frozen=True)
class EmulatedSetup:
    """(b) ``usb-ccid`` + ``ccid-card-emulated,backend=certificates`` over the NSS DB ``db``."""

    db: Path
    certificates: tuple[str, str, str] = ("cert1", "cert2", "cert3")
    name: str = field(default="emulated", init=False)

    def __post_init__(self) -> None:
        text = f"sql:{self.db}"
        if "," in text or any("," in cert for cert in self.certificates):
            raise ValueError("NSS DB path and nicknames must not contain commas (QEMU options)")
        # QEMU formats the libcacard options, db path included, into a 200-byte buffer.
        options = f'db="{text}" use_hw=no soft=(,Virtual Reader,CAC,,{",".join(self.certificates)})'
        if len(options) >= 200:
            raise ValueError(f"NSS DB path too long for QEMU's 200-byte option buffer: {text}")

    def card_properties(self) -> dict[str, str]:
        cert1, cert2, cert3 = self.certificates
        return {
            "backend": "certificates",
            "db": f"sql:{self.db}",
            "cert1": cert1,
            "cert2": cert2,
            "cert3": cert3,
        }


@dataclass(frozen=True)
class UsbipSetup:
    """(c) no QEMU reader: the guest attaches ``busid`` from the host's USB/IP server.

    ``attach`` False leaves attaching (and starting pcscd) to the checks, e.g. to list first:
    ``[usbip_list(...), *usbip_reader(...), ...]``.
    """

    port: int
    busid: str
    host: str = ck.HOST_ADDRESS
    attach: bool = True
    name: str = field(default="usbip", init=False)


@dataclass(frozen=True)
class UsbipExportSetup:
    """The emulated card exported by the guest's ``usbipd`` as :data:`EXPORTED_BUSID`.

    The host reaches that usbipd on ``127.0.0.1:port`` (0: QEMU picks a free port;
    :attr:`Guest.usbip_port` tells which). No pcscd runs in this guest: usbip-host owns the
    device. Give it a :func:`~.checks.serve` check to keep it up until the host is done.
    """

    card: EmulatedSetup
    port: int = 0
    name: str = field(default="usbip-export", init=False)


#: The bus id of the only USB device of an exporting guest.
EXPORTED_BUSID = "1-1"

Setup = PassthruSetup | EmulatedSetup | UsbipSetup | UsbipExportSetup


def setup_checks(setup: Setup) -> tuple[Check, ...]:
    """The fatal steps that give the guest a reader that pcscd knows (or that usbipd serves)."""
    if isinstance(setup, UsbipExportSetup):
        return (
            ck.load_modules("usb", "usbip", "net"),
            ck.network_up(),
            ck.ccid_device(),
            ck.usbip_export(EXPORTED_BUSID),
        )
    if isinstance(setup, UsbipSetup):
        steps: tuple[Check, ...] = (ck.load_modules("usbip", "net"), ck.network_up())
        if setup.attach:
            steps += ck.usbip_reader(setup.port, setup.busid, setup.host)
        return steps
    return (ck.load_modules("usb"), ck.ccid_device(), ck.start_pcscd())


def qemu_args(
    image: GuestImage,
    setup: Setup,
    *,
    script: Path,
    qmp_fd: int,
    controller: Controller = "uhci",
    interactive: bool = False,
) -> list[str]:
    """The whole ``qemu-system-x86_64`` command line."""
    if interactive:
        # Ctrl-A x quits, Ctrl-A c reaches the monitor; Ctrl-C goes to the guest.
        console = ["-chardev", "stdio,id=console,mux=on,signal=off"]
        console += ["-mon", "chardev=console,mode=readline"]
    else:
        console = ["-chardev", "stdio,id=console,signal=off"]
    args = [
        QEMU,
        "-accel", "tcg",
        "-cpu", "max",
        "-machine", "pc",
        "-m", str(MEMORY_MB),
        "-smp", "1",
        "-nodefaults",
        "-nographic",
        "-no-reboot",
        "-S",
        *console,
        "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,fd={qmp_fd}",
        "-mon", "chardev=qmp,mode=control",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initramfs),
        "-append", KERNEL_ARGS,
        "-fw_cfg", f"name={FW_CFG_SCRIPT},file={script}",
        "-device", "virtio-net-pci,netdev=net0,romfile=",
    ]  # fmt: skip
    netdev = "user,id=net0"
    if isinstance(setup, UsbipExportSetup):
        netdev += f",hostfwd=tcp:127.0.0.1:{setup.port}-:{USBIP_PORT}"
    args += ["-netdev", netdev]
    if isinstance(setup, UsbipSetup):
        return args
    args += ["-device", f"{CONTROLLERS[controller]},id=usb"]
    args += ["-device", f"usb-ccid,id={READER_ID},bus=usb.0"]
    if isinstance(setup, PassthruSetup):
        chardev = f"socket,id=vsc,server=on,wait=off,host=127.0.0.1,port={setup.port},nodelay=on"
        if setup.tls_dir is not None:
            tls = f"tls-creds-x509,id=tls0,dir={setup.tls_dir},endpoint=server,verify-peer=on"
            args += ["-object", tls]
            chardev += ",tls-creds=tls0"
        args += ["-chardev", chardev]
        args += ["-device", f"ccid-card-passthru,id={CARD_ID},chardev=vsc"]
    else:
        card = setup if isinstance(setup, EmulatedSetup) else setup.card
        properties = ",".join(f"{k}={v}" for k, v in card.card_properties().items())
        args += ["-device", f"ccid-card-emulated,id={CARD_ID},{properties}"]
    return args
