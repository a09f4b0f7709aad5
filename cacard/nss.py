"""A card from an NSS database, the way QEMU's libcacard users keep their certificates.

libcacard is given ``db="sql:/etc/pki/nssdb"`` and nicknames (``cert1``..``cert3``), and its
PIN is the database password. :func:`load_nss` takes the same three things and returns the
credentials, each key a :class:`~cacard.rsa.SoftwareKey` (RSA) or a
:class:`~cacard.ec.SoftwareECKey` (P-256, P-384: a card with PIV holds those).

**How.** NSS's own ``pk12util`` (Debian package ``libnss3-tools``) exports each nickname's
private key as PKCS#12, encrypted under a one-time random password, through a pipe into this
process (never a file); ``certutil -L`` gives the certificate. The tools only read the database.

**Why export rather than keep the key in NSS's softoken.** The softoken is a library that runs
inside whichever process opens the database: the key is decrypted into this process's memory
either way, and the database file plus its password are what protect it. Keeping it in the
softoken would need either the p11-kit proxy with one ``x-init-reserved`` module file per
database in ``/etc/pkcs11/modules`` (root, system-wide configuration: neither python-pkcs11 nor
PyKCS11 passes NSS's init string itself) or a hand-written ctypes binding to libnss3; and the
softoken measured ~400-450 RSA-2048 signatures/s through p11-kit, against ~4,500 for
:class:`~cacard.rsa.SoftwareKey`.
Keys on a hardware token listed in the database's ``pkcs11.txt`` cannot be exported: use
:mod:`cacard.pkcs11` with that token's module, where the key stays on the token.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from cacard.keys import Credential
from cacard.rsa import UnsupportedKeyError
from cacard.software import software_key
from cardfloor.log import get_logger

__all__ = ["DEFAULT_DB", "HOST_PACKAGES", "NssCard", "NssError", "load_nss"]

log = get_logger(__name__)

#: Debian packages this module runs: ``certutil`` and ``pk12util``.
HOST_PACKAGES: Final = ("libnss3-tools",)

#: libcacard's default database.
DEFAULT_DB: Final = "sql:/etc/pki/nssdb"

_TIMEOUT_SECONDS: Final = 60.0
_SEC_ERROR = re.compile(r"\b(SEC_ERROR_\w+|PR_\w+_ERROR|SSL_ERROR_\w+)\b")


class NssError(Exception):
    """The NSS database could not be read: no tools, no database, wrong password, no nickname."""


@dataclass(frozen=True)
class NssCard:
    """What a card needs from an NSS database.

    ``pin`` is the database password, which libcacard uses as the card PIN, or None when the
    database has no password (libcacard then accepts any PIN).
    """

    credentials: tuple[Credential, ...]
    pin: str | None


def load_nss(db: str, nicknames: Sequence[str], password: str | None = None) -> NssCard:
    """Read ``nicknames`` (certificate and private key each) from the NSS database ``db``.

    ``db`` is what NSS takes: ``sql:DIR`` (``DIR`` alone means the same), or ``dbm:DIR`` for
    the legacy format. ``password`` is the database password, needed if it has one. Keys must
    be RSA of 1024-4096 bits, P-256 or P-384 (:class:`~cacard.rsa.UnsupportedKeyError`
    naming the nickname otherwise).
    Raises :class:`NssError`.
    """
    if not nicknames:
        raise NssError("no nicknames given")
    if password is not None and ("\n" in password or "\0" in password):
        raise NssError("an NSS password cannot contain a newline or NUL")
    protected = _password_protected(db)
    if protected and password is None:
        raise NssError(f"NSS database {db} has a password: give it (it is also the card PIN)")
    credentials = tuple(
        _export(db, nickname, password if protected else None) for nickname in nicknames
    )
    log.info("nss_loaded", db=db, nicknames=list(nicknames), password_protected=protected)
    return NssCard(credentials, password if protected else None)


def _password_protected(db: str) -> bool:
    """Whether ``db`` has a password: ``certutil -K`` with an empty one fails only then."""
    result = _run(["certutil", "-K", "-d", db], {"-f": b"\n"})
    if "SEC_ERROR_BAD_PASSWORD" in result.stderr:
        return True
    if result.returncode != 0 and "no keys found" not in result.stderr:
        raise NssError(f"cannot open NSS database {db}: {_nss_error(result.stderr)}")
    return False


def _export(db: str, nickname: str, password: str | None) -> Credential:
    p12_password = secrets.token_urlsafe(24).encode()
    result = _run(
        ["pk12util", "-n", nickname, "-d", db],
        {"-k": f"{password or ''}\n".encode(), "-w": p12_password + b"\n"},
        output_option="-o",
    )
    if result.returncode != 0 or not result.output:
        error = _nss_error(result.stderr)
        if "SEC_ERROR_BAD_PASSWORD" in error:
            raise NssError(f"wrong password for NSS database {db}")
        if "no user certs" in result.stderr:  # NSS's "user cert" is one with a private key
            raise NssError(f"NSS database {db} has no private key for {nickname!r}")
        if "SEC_ERROR_UNKNOWN_CERT" in error:
            raise NssError(f"NSS database {db} has no certificate with nickname {nickname!r}")
        raise NssError(f"cannot export {nickname!r} from NSS database {db}: {error}")
    key = _shrouded_key(result.output, p12_password, nickname)
    try:
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise UnsupportedKeyError(
                f"{type(key).__name__} is not a key a card holds (RSA, P-256, P-384)"
            )
        card_key = software_key(key)
    except UnsupportedKeyError as error:
        raise UnsupportedKeyError(f"NSS database {db}, nickname {nickname!r}: {error}") from None
    listed = _run(["certutil", "-L", "-d", db, "-n", nickname, "-a"], {})
    try:
        certificates = x509.load_pem_x509_certificates(listed.stdout)
    except ValueError as error:
        raise NssError(f"cannot read certificate {nickname!r}: {listed.stderr.strip()}") from error
    # Renewed certificates can share a nickname: the one for this key is the one pk12util took.
    for certificate in certificates:
        if certificate.public_key() == key.public_key():
            return Credential(certificate, card_key, nickname)
    raise NssError(f"no certificate nicknamed {nickname!r} matches its exported key")


def _shrouded_key(data: bytes, password: bytes, nickname: str) -> PrivateKeyTypes:
    """The private key from pk12util's PKCS#12.

    pk12util writes BER (indefinite lengths), which cryptography's PKCS#12 loader accepts only
    with a deprecation warning; asn1crypto reads BER, and the shrouded key bag, re-encoded as
    DER, is a PKCS#8 EncryptedPrivateKeyInfo that cryptography decrypts. The certificate bag is
    encrypted separately and not needed: ``certutil -L`` gives the certificate.
    """
    try:
        for content_info in asn1_pkcs12.Pfx.load(data).authenticated_safe:
            if content_info["content_type"].native != "data":
                continue  # the encrypted certificate bag
            for bag in asn1_pkcs12.SafeContents.load(content_info["content"].native):
                if bag["bag_id"].native == "pkcs8_shrouded_key_bag":
                    encrypted = bag["bag_value"].untag().dump(force=True)
                    return serialization.load_der_private_key(encrypted, password)
    except (ValueError, TypeError) as error:
        raise NssError(
            f"cannot read the key pk12util exported for {nickname!r}: {error}"
        ) from error
    raise NssError(f"pk12util exported no private key for {nickname!r}")


@dataclass(frozen=True)
class _Result:
    returncode: int
    stdout: bytes
    stderr: str
    output: bytes


def _run(
    command: list[str], secrets_by_option: dict[str, bytes], output_option: str | None = None
) -> _Result:
    """Run an NSS tool, handing each secret through its own pipe as ``OPTION /dev/fd/N``.

    With ``output_option``, the tool writes its output file to a pipe (``OPTION /dev/fd/N``)
    and it comes back in :attr:`_Result.output`. Secrets never appear on a command line or in
    a file.
    """
    tool = shutil.which(command[0])
    if tool is None:
        raise NssError(f"{command[0]} is not installed (Debian package libnss3-tools)")
    argv = [tool, *command[1:]]
    child_fds: list[int] = []
    output_fd = None
    try:
        for option, secret in secrets_by_option.items():
            secret_read, secret_write = os.pipe()
            child_fds.append(secret_read)
            os.write(secret_write, secret)  # a few bytes: fits in the pipe, cannot block
            os.close(secret_write)
            argv += [option, f"/dev/fd/{secret_read}"]
        if output_option is not None:
            output_fd, output_write = os.pipe()
            child_fds.append(output_write)
            argv += [output_option, f"/dev/fd/{output_write}"]
        # A new session has no controlling terminal, so a tool that wants to prompt for a
        # password fails instead of waiting on the user's terminal.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=child_fds,
            start_new_session=True,
        )
    except BaseException:
        if output_fd is not None:
            os.close(output_fd)
        raise
    finally:
        for fd in child_fds:
            os.close(fd)  # the child has its copies: EOF on the output comes when it exits
    written = b""
    try:
        if output_fd is not None:
            with os.fdopen(output_fd, "rb") as reader:
                written = reader.read()
        stdout, stderr = process.communicate(timeout=_TIMEOUT_SECONDS)
    except BaseException:
        process.kill()
        process.wait()
        raise
    log.debug("nss_tool_ran", tool=command[0], returncode=process.returncode)
    return _Result(process.returncode, stdout, stderr.decode(errors="replace"), written)


def _nss_error(stderr: str) -> str:
    """The NSS error code names in a tool's stderr, or its last line."""
    codes = list(dict.fromkeys(_SEC_ERROR.findall(stderr)))
    lines = stderr.strip().splitlines()
    return ", ".join(codes) if codes else (lines[-1] if lines else "no message")
