"""Real OpenSC (0.23) tools on a ``cacard serve-vpcd`` card in the private pcscd: start and stop
the card process, run ``opensc-tool``/``pkcs15-tool``/``pkcs11-tool`` on its reader, sign and
decrypt.

Bind the fixture in a test module (``opensc_env = opensc.opensc_env``), as with
:mod:`tests.interop.pcsc.fixtures`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from .pcsc.fixtures import wait_for_card
from .pcsc.pcscd import PDEATHSIG, Pcscd

#: The OpenSC tools the tests run (Debian package opensc).
TOOLS = ("opensc-tool", "pkcs15-tool", "pkcs11-tool")
# OpenSC's file cache would serve one card's files to another with the same serial; off.
OPENSC_CONF = "app default {\n  framework pkcs15 {\n    use_file_caching = no;\n  }\n}\n"
#: pkcs11-tool's options for RSA-PKCS-OAEP with SHA-256 (its default hash is SHA-1).
OAEP_SHA256 = ("--hash-algorithm", "SHA256", "--mgf", "MGF1-SHA256")
SHA256_DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")


def missing_tools() -> bool:
    return not all(shutil.which(tool) for tool in TOOLS)


@pytest.fixture(scope="module")
def opensc_env(pcscd: Pcscd, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment for OpenSC tools: the private pcscd, no file caching."""
    conf = tmp_path_factory.mktemp("opensc") / "opensc.conf"
    conf.write_text(OPENSC_CONF)
    return {**os.environ, **pcscd.client_env(), "OPENSC_CONF": str(conf)}


def cacard(*argv: str) -> list[str]:
    """The ``cacard`` command line, run by this interpreter."""
    return [sys.executable, "-m", "cacard", *argv]


def serve(
    pcscd: Pcscd,
    card: list[str],
    workdir: Path,
    slot: int,
    *,
    verbosity: str = "-v",
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Run ``cacard serve-vpcd CARD...`` on vpcd ``slot`` and wait until PC/SC sees the card.

    ``card`` is what names the card: ``[DIR]``, ``["--nss", DB, ...]``... The process logs to
    ``workdir/serve.log``.
    """
    log = (workdir / "serve.log").open("ab")
    argv = [
        *PDEATHSIG,
        *pcscd.netns_argv(),
        *cacard(verbosity, "serve-vpcd", *card, "--port", str(pcscd.card_port(slot))),
    ]
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=None if env is None else dict(env),
    )
    try:
        wait_for_card(pcscd.reader_name(slot), present=True)
    except TimeoutError:
        process.kill()
        process.wait()
        pytest.fail(f"the card never appeared:\n{(workdir / 'serve.log').read_text()}")
    return process


def stop(pcscd: Pcscd, process: subprocess.Popen[bytes], slot: int) -> None:
    """Stop a card process with SIGTERM (a clean exit) and wait until its reader is empty."""
    process.terminate()
    assert process.wait(10) == 0  # SIGTERM is a clean shutdown
    wait_for_card(pcscd.reader_name(slot), present=False)


def sha256_digest_info(data: bytes) -> bytes:
    """What CKM_RSA_PKCS signs for a SHA-256 signature: the DigestInfo of ``data``."""
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return SHA256_DIGEST_INFO_PREFIX + digest.finalize()


@dataclass
class Reader:
    """OpenSC's tools pointed at one vpcd reader."""

    env: dict[str, str]
    workdir: Path
    slot: int
    reader: str

    def run(self, tool: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run an OpenSC tool on this reader."""
        if tool == "pkcs11-tool":
            where = ["--slot-description", self.reader]
        else:
            where = ["--reader", str(self.slot)]
        argv = (tool, *where, *argv)
        result = subprocess.run(
            argv, env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        if check and result.returncode:
            pytest.fail(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def pin_status(self) -> str:
        """VERIFY without data, sent raw by opensc-tool: the card's own report of the PIN
        counter (``9000`` verified, ``63Cx`` x tries left, ``6983`` blocked)."""
        out = self.run("opensc-tool", "-s", "00 20 00 00").stdout
        return (out.rsplit("SW1=0x", 1)[1][:2] + out.rsplit("SW2=0x", 1)[1][:2]).upper()

    def sign(
        self, pin: str, key_id: str, mechanism: str, data: bytes, *options: str, check: bool = True
    ) -> bytes:
        """``pkcs11-tool --login --pin PIN --sign``: the signature of ``data``."""
        source, target = self.workdir / "in", self.workdir / "sig"
        source.write_bytes(data)
        target.unlink(missing_ok=True)
        self.run(
            "pkcs11-tool", "--login", "--pin", pin, "--sign", "--id", key_id,
            "-m", mechanism, *options, "-i", str(source), "-o", str(target), check=check,
        )  # fmt: skip
        return target.read_bytes() if target.exists() else b""

    def decrypt(
        self,
        pin: str,
        key_id: str,
        mechanism: str,
        ciphertext: bytes,
        *options: str,
        check: bool = True,
    ) -> bytes:
        """``pkcs11-tool --login --pin PIN --decrypt``: the plaintext of ``ciphertext``."""
        source, target = self.workdir / "ct", self.workdir / "pt"
        source.write_bytes(ciphertext)
        target.unlink(missing_ok=True)
        self.run(
            "pkcs11-tool", "--login", "--pin", pin, "--decrypt", "--id", key_id,
            "-m", mechanism, *options, "-i", str(source), "-o", str(target), check=check,
        )  # fmt: skip
        return target.read_bytes() if target.exists() else b""
