"""Our client against a TLS-protected QEMU 7.2 ccid-card-passthru (tls-creds-x509, GnuTLS)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import vscard
from vscard.tls import client_context

from ..tls_pki import TlsFiles, make_tls_files
from .qemu import qemu_available, qemu_passthru

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not qemu_available(), reason="qemu-system-x86_64 is not installed"),
]

ATHENA_ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("qemu-tls"))


def tls_args(pki: TlsFiles) -> list[str]:
    return [
        "-object",
        f"tls-creds-x509,id=tls0,dir={pki.directory},endpoint=server,verify-peer=on",
    ]


async def card(apdu: bytes) -> bytes:
    return b"\x6d\x00"


async def test_our_client_drives_a_tls_protected_qemu_passthru(pki: TlsFiles) -> None:
    async with qemu_passthru(tls_args(pki), chardev_options=",tls-creds=tls0") as qemu:
        tls = client_context(pki.ca, pki.client_cert, pki.client_key)
        async with await vscard.connect(
            "127.0.0.1", qemu.port, ssl=tls, server_hostname="localhost"
        ) as client:
            assert client.host_version == vscard.VSCARD_VERSION
            reader = await client.add_reader("TLS reader", transmit=card)
            assert reader.reader_id == 0
            await reader.insert(ATHENA_ATR)
            await reader.remove_card()


async def test_qemu_refuses_a_client_whose_certificate_it_does_not_trust(pki: TlsFiles) -> None:
    async with qemu_passthru(tls_args(pki), chardev_options=",tls-creds=tls0") as qemu:
        intruder = client_context(pki.ca, pki.intruder_cert, pki.intruder_key)
        with pytest.raises((ssl.SSLError, ConnectionError, vscard.VSCardError, TimeoutError)):
            await vscard.connect("127.0.0.1", qemu.port, ssl=intruder, timeout=5)


def test_the_pki_is_in_qemus_layout(pki: TlsFiles) -> None:
    names = {path.name for path in Path(pki.directory).iterdir()}
    assert {"ca-cert.pem", "server-cert.pem", "server-key.pem"} <= names
