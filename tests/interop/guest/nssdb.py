"""An NSS database for QEMU's reference card (``ccid-card-emulated,backend=certificates``).

Three self-signed RSA-2048 certificates with their keys, nicknamed ``cert1``..``cert3``, made
with ``certutil`` (libnss3-tools). libcacard turns them into the CAC card's three certificates
and private keys. With the default empty password any PIN verifies on that card; with a
password, the PIN is the password.

Keep the directory's path short: QEMU formats ``db="sql:<path>"`` and the nicknames into a
200-byte buffer (``tempfile.mkdtemp(prefix="vsc-")`` under /tmp is fine).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

NICKNAMES: tuple[str, str, str] = ("cert1", "cert2", "cert3")
CERTUTIL_TIMEOUT = 60.0


class NssDbError(RuntimeError):
    """certutil is missing or failed."""


@dataclass(frozen=True)
class NssDb:
    directory: Path
    nicknames: tuple[str, str, str]
    password: str

    @property
    def spec(self) -> str:
        """The ``sql:`` form NSS (and QEMU's ``db=``) expects."""
        return f"sql:{self.directory}"


def _certutil(*args: str) -> None:
    try:
        completed = subprocess.run(
            ["certutil", *args],
            capture_output=True,
            text=True,
            timeout=CERTUTIL_TIMEOUT,
            check=False,
        )
    except FileNotFoundError as error:
        raise NssDbError("certutil is missing: apt-get install libnss3-tools") from error
    except subprocess.TimeoutExpired as error:
        raise NssDbError(f"certutil {' '.join(args)} timed out") from error
    if completed.returncode != 0:
        raise NssDbError(
            f"certutil {' '.join(args)} failed ({completed.returncode}): "
            f"{(completed.stderr or completed.stdout).strip()}"
        )


def make_nssdb(
    directory: Path, *, password: str = "", nicknames: tuple[str, str, str] = NICKNAMES
) -> NssDb:
    """Create the DB in ``directory`` (made if missing; must not hold a DB yet)."""
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cert9.db").exists():
        raise NssDbError(f"{directory} already holds an NSS DB")
    password_file = directory / ".password"
    noise_file = directory / ".noise"
    try:
        password_file.write_text(password + "\n")
        db = f"sql:{directory}"
        if password:
            _certutil("-N", "-d", db, "-f", str(password_file))
        else:
            _certutil("-N", "-d", db, "--empty-password")
        for serial, nickname in enumerate(nicknames, start=1):
            noise_file.write_bytes(os.urandom(2048))
            _certutil(
                "-S",
                "-d", db,
                "-f", str(password_file),
                "-z", str(noise_file),
                "-n", nickname,
                "-s", f"CN=vscard test {nickname},O=vscard",
                "-x",
                "-t", "CT,C,C",
                "-k", "rsa",
                "-g", "2048",
                "-Z", "SHA256",
                "-m", str(serial),
                "-v", "120",
            )  # fmt: skip
    finally:
        password_file.unlink(missing_ok=True)
        noise_file.unlink(missing_ok=True)
    return NssDb(directory, nicknames, password)
