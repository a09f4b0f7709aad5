"""NSS databases for tests, made with NSS's own tools (certutil, pk12util: libnss3-tools)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs12

from .certificates import issue


def nss_db(directory: Path, password: str) -> str:
    """A new NSS sql database in ``directory``, with ``password`` ("" for none)."""
    directory.mkdir()
    password_file = directory.parent / f"{directory.name}.pw"
    password_file.write_text(password + "\n")
    db = f"sql:{directory}"
    if password:
        subprocess.run(["certutil", "-N", "-d", db, "-f", password_file], check=True)
    else:
        subprocess.run(["certutil", "-N", "-d", db, "--empty-password"], check=True)
    return db


def import_key(db: str, password: str, nickname: str, key: PrivateKeyTypes, tmp: Path) -> None:
    """Import a key and a certificate for it under ``nickname``, as pk12util -i does."""
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    certificate = issue(key.public_key(), nickname)
    bundle = pkcs12.serialize_key_and_certificates(
        nickname.encode(), key, certificate, None, serialization.BestAvailableEncryption(b"p12")
    )
    (tmp / "in.p12").write_bytes(bundle)
    (tmp / "p12.pw").write_text("p12\n")
    (tmp / "db.pw").write_text(password + "\n")
    subprocess.run(
        ["pk12util", "-i", tmp / "in.p12", "-d", db, "-w", tmp / "p12.pw", "-k", tmp / "db.pw"],
        check=True,
        capture_output=True,
    )


def make_key_in_nss(db: str, password: str, nickname: str, kind: str, tmp: Path) -> None:
    """A self-signed certificate whose key NSS itself generates (``certutil -S``), as
    libcacard's test databases are made: ``kind`` is ``rsa`` (2048 bits) or a curve NSS names
    (``nistp256``, ``nistp384``)."""
    (tmp / "db.pw").write_text(password + "\n")
    (tmp / "noise").write_bytes(hashlib.sha512(nickname.encode()).digest() * 32)
    key_options = ["-k", "rsa", "-g", "2048"] if kind == "rsa" else ["-k", "ec", "-q", kind]
    subprocess.run(
        ["certutil", "-S", "-d", db, "-f", tmp / "db.pw", "-z", tmp / "noise", "-n", nickname,
         "-s", f"CN={nickname}", "-x", "-t", "u,u,u", *key_options],
        check=True,
        capture_output=True,
    )  # fmt: skip
