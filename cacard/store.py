"""A card kept in a directory: certificates, keys and data objects that never change, the PIN
and PUK state, rewritten atomically whenever it changes, so a blocked card stays blocked, and on
a card with PIV what the PIV application changed (generated keys, written data objects).

Layout (card format versions 1 and 2)::

    DIR/
      card.json       what the card holds (written once)
      state.json      the PIN and PUK reference data and retry counters (rewritten atomically)
      cert-1.pem      one certificate and its private key per PKI applet, in order;
      key-1.pem       the file names are whatever card.json says
      person-instance.tlv   content of a data object (SimpleTLV), if any
      ca.pem          (cacard new only) the test CA that issued the certificates
      piv.json        (a card with PIV, once the PIV application changed something) what it
                      kept: the files below, by key reference and object tag
      piv-key-9a.N.pem      a key GENERATE ASYMMETRIC KEY PAIR made (PKCS#8, 0600)
      piv-object-5fc105.N.bin   the content of a data object PUT DATA wrote (0600)
      .lock           locked while a process serves the card (.lock.pid where neither
                      flock nor msvcrt.locking exists: cacard.lockfile)
      .state.json.PID.tmp   state.json (or piv.json, a piv- file) being written by process
                            PID; left by a crash, it is removed the next time a process takes
                            the card and PID is gone

``card.json``::

    {"format": "cacard-card", "version": 2,
     "profile": "cac" | "piv" | "cac+piv",    the card applications (version 2 only)
     "card_id": "<14 bytes, hex>",            the CUID card id, OpenSC's token serial
     "atr": "<hex>",                          optional; libcacard's CAC ATR by default
                                              (cacard.atr: T=1 needs a right TCK)
     "credentials": [{"certificate": "cert-1.pem", "key": "key-1.pem", "label": "ID"}, ...],
     "data_objects": {"0200": "person-instance.tlv"}}          optional

Version 1 has no ``profile``: it is a CAC card. :func:`create` writes version 1 for a CAC card,
so older cacard releases still serve it, and version 2 only for a card with PIV, which they
must refuse rather than serve as a CAC card.

Certificates are PEM or DER; keys are unencrypted PEM or DER (PKCS#8 or traditional), mode
0600: the directory is the card, so protect it like a private key. The files card.json names
must lie inside the directory (a subdirectory will do; a name or link leading out of it is
refused, naming the field and the value) and be regular files of at most
:data:`MAX_CREDENTIAL_FILE` bytes (certificates, keys) or :data:`MAX_DATA_OBJECT_FILE` (data
objects); every file the card reads is bounded so (:class:`FileTooLargeError` gives the size).

``state.json``::

    {"format": "cacard-state", "version": 1,
     "pin": {"kdf": "pbkdf2-hmac-sha256", "iterations": 100000, "salt": "<hex>",
             "digest": "<hex>", "max_tries": 3, "tries_remaining": 3},
     "puk": {... as "pin" ...}}               optional: a card with PIV

The PIN and PUK themselves are never stored, only a salted PBKDF2 of each. A card with PIV and
no ``puk`` (every directory made before cards had one) gets a PUK no value opens, as before:
the PUK is optional within version 1 because a reader that ignores it fails the safe way.

``piv.json``, rewritten atomically after the file it names is written whole::

    {"format": "cacard-piv", "version": 1,
     "generation": 7,                         the N of the newest file; names never repeat
     "keys": {"9A": "piv-key-9a.3.pem"},      generated keys, by key reference
     "objects": {"5FC105": "piv-object-5fc105.7.bin",
                 "5FC10B": null}}             written objects; null: PUT DATA deleted it

A generated key wins over the credential's key at that reference for the PIV application only
(a CAC applet of the same credential keeps the credential's key), and the certificate object
stays the credential's until PUT DATA replaces it, as the card answered before the restart.
Every change writes a new file under a fresh name, then ``piv.json``, then removes the file it
replaced: a crash leaves the old or the new card, whole, and at most a file ``piv.json`` does
not name, which the next process to take the card removes. Keys are one per key reference,
objects one per PIV object tag and at most :data:`MAX_PIV_OBJECT` bytes, so the directory stays
bounded whatever a host writes.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from cardfloor.log import get_logger

from . import lockfile
from .applets.containers import DataObjectId
from .atr import CAC_ATR, atr_problem
from .card import Card, CardState
from .keys import Credential
from .pin import PinReference, PinState
from .piv.applet import (
    MAX_CHAIN,
    KeyGenerated,
    PIVChange,
    PIVKeyError,
    PukChanged,
    SlotKey,
    fasc_n,
    key_algorithm,
)
from .piv.objects import CHUID, KeyReference, ObjectTag
from .profile import (
    PIV_KEYS,
    Applications,
    CardProfile,
    ProfileError,
    new_card,
    piv_applet,
    piv_capability_container,
)
from .rsa import UnsupportedKeyError
from .software import software_key
from .sources import (
    SourceError,
    credential,
    parse_certificate,
    parse_private_key,
)
from .tlv import MAX_LENGTH as MAX_BUFFER

log = get_logger(__name__)

CARD_FILE: Final = "card.json"
STATE_FILE: Final = "state.json"
PIV_FILE: Final = "piv.json"
LOCK_FILE: Final = lockfile.LOCK_FILE
CARD_FORMAT: Final = "cacard-card"
STATE_FORMAT: Final = "cacard-state"
PIV_FORMAT: Final = "cacard-piv"
#: card.json versions: 1 is a CAC card; 2 adds ``profile``.
CARD_VERSIONS: Final = (1, 2)
STATE_VERSION: Final = 1
PIV_VERSION: Final = 1
PIN_KDF: Final = "pbkdf2-hmac-sha256"
#: Suggested file names of data object contents.
DATA_OBJECT_FILES: Final = {
    object_id: object_id.label.lower().replace(" ", "-") + ".tlv" for object_id in DataObjectId
}
#: The largest PIV object a card keeps: what one command chain carries (the applet's bound).
MAX_PIV_OBJECT: Final = MAX_CHAIN
#: The largest card.json, state.json or piv.json read back (what cacard writes is a few KiB:
#: a card.json names at most ten credentials and a data object per DataObjectId).
MAX_JSON_FILE: Final = 1024 * 1024
#: The largest certificate or key file card.json may name. A CAC object buffer holds at most
#: 64 KiB (:data:`cacard.tlv.MAX_LENGTH`), so the largest certificate a card serves is about
#: 88 KiB as PEM; 1 MiB leaves room for its key in the same file, a chain after it and the
#: text dump OpenSSL writes before it.
MAX_CREDENTIAL_FILE: Final = 1024 * 1024
#: The largest data object file card.json may name: what the object's T-buffer and V-buffer
#: carry together (its SimpleTLV headers and values), no more is ever served.
MAX_DATA_OBJECT_FILE: Final = 2 * MAX_BUFFER
#: The largest key file read back (an RSA-4096 PKCS#8 PEM is about 3.3 KiB).
MAX_PIV_KEY_FILE: Final = 16 * 1024
#: The largest ``generation`` of ``piv.json``: its file names hold at most 12 digits.
MAX_PIV_GENERATION: Final = 10**12 - 1
#: The files of a credential entry in card.json.
_PARTS: Final = ("certificate", "key")
#: The key references GENERATE may fill (every asymmetric one).
PIV_KEY_REFERENCES: Final = frozenset(KeyReference) - {KeyReference.CARD_MANAGEMENT}
#: The FASC-N and expiry of the CHUID (the applet's test values).
_CHUID_EXPIRATION: Final = datetime.date(2049, 12, 31)

#: The objects the PIV applet makes itself when the card keeps none.
_APPLET_OBJECTS: Final = frozenset(
    {
        ObjectTag.CARD_CAPABILITY_CONTAINER,
        ObjectTag.CHUID,
        ObjectTag.DISCOVERY,
        ObjectTag.KEY_HISTORY,
    }
)
_PIV_NAME: Final = re.compile(r"piv-(key-[0-9a-f]{2}|object-[0-9a-f]{6})\.([0-9]{1,12})\.(pem|bin)")
#: :func:`_temporary_name` of the files a card rewrites, any pid (Linux's are below 2**22).
_TEMPORARY: Final = re.compile(
    rf"\.({re.escape(STATE_FILE)}|{re.escape(PIV_FILE)}|{_PIV_NAME.pattern})"
    r"\.(?P<pid>[1-9][0-9]{0,6})\.tmp"
)


class StoreError(Exception):
    """A card directory that cannot be used; ``field`` names the part and ``value`` what it held."""

    def __init__(self, reason: str, *, path: Path, field: str = "", value: object = None) -> None:
        where = f"{path}" + (f": {field}={value!r}" if field else "")
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.path = path
        self.field = field
        self.value = value


class CardInUseError(StoreError):
    """Another process is serving this card."""


class FileTooLargeError(StoreError):
    """A file of the card directory is larger than the card reads: ``size`` bytes (at least,
    for a file that grew while read), more than ``limit``."""

    def __init__(self, path: Path, *, size: int, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes", path=path, field="size", value=size)
        self.size = size
        self.limit = limit


def read_bounded(file: Path, limit: int) -> bytes:
    """The content of the regular file ``file``, at most ``limit`` bytes, else
    :class:`FileTooLargeError`. A named pipe or a device is refused without reading (opening a
    pipe no one writes to would block, and a device may never end)."""
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise  # the caller knows what a missing file means (no card.json: no card directory)
    except OSError as error:
        raise StoreError(f"unreadable ({error.strerror or error})", path=file) from None
    with os.fdopen(fd, "rb") as opened:
        status = os.fstat(opened.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise StoreError("not a regular file", path=file)
        if status.st_size > limit:
            raise FileTooLargeError(file, size=status.st_size, limit=limit)
        try:
            data = opened.read(limit + 1)
        except OSError as error:
            raise StoreError(f"unreadable ({error.strerror or error})", path=file) from None
    if len(data) > limit:
        raise FileTooLargeError(file, size=len(data), limit=limit)
    return data


@dataclass(frozen=True)
class CredentialFiles:
    """A certificate and its private key, to be written into a new card directory."""

    certificate: x509.Certificate
    key: PrivateKeyTypes
    label: str = ""


@dataclass(frozen=True)
class NewCard:
    """What :func:`create` writes."""

    credentials: Sequence[CredentialFiles]
    card_id: bytes
    pin: PinState
    atr: bytes = CAC_ATR
    data_objects: Mapping[DataObjectId, bytes] = field(default_factory=dict)
    applications: Applications = Applications.CAC
    #: Further files to keep beside the card (``ca.pem``...), by name.
    extra_files: Mapping[str, bytes] = field(default_factory=dict)
    #: The PIV PUK (a card with PIV only); None: a PUK no value opens.
    puk: PinState | None = None


@dataclass(frozen=True)
class PIVKept:
    """What a card's PIV application changed and the card keeps (``piv.json``)."""

    #: Keys GENERATE made, by key reference.
    keys: Mapping[KeyReference, PrivateKeyTypes] = field(default_factory=dict)
    #: Objects PUT DATA wrote, by tag; None: deleted.
    objects: Mapping[ObjectTag, bytes | None] = field(default_factory=dict)


@dataclass(frozen=True)
class _PIVDocument:
    """``piv.json``: the file of each kept key and object."""

    generation: int = 0
    keys: Mapping[KeyReference, str] = field(default_factory=dict)
    objects: Mapping[ObjectTag, str | None] = field(default_factory=dict)

    def names(self) -> set[str]:
        return {*self.keys.values(), *(n for n in self.objects.values() if n is not None)}

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PIV_FORMAT,
            "version": PIV_VERSION,
            "generation": self.generation,
            "keys": {f"{ref:02X}": name for ref, name in sorted(self.keys.items())},
            "objects": {f"{tag:06X}": name for tag, name in sorted(self.objects.items())},
        }


def _temporary_name(name: str, pid: int) -> str:
    """Where process ``pid`` writes ``name`` before renaming it into place."""
    return f".{name}.{pid}.tmp"


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    A crash before the rename leaves the temporary file behind: :meth:`CardStore.lock`
    removes those of the files a card rewrites.
    """
    temporary = path.with_name(_temporary_name(path.name, os.getpid()))
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    if os.name == "nt":  # Windows has no directory handles to fsync; its rename is durable
        return
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _process_exists(pid: int) -> bool:
    # A platform that cannot tell (Windows) keeps the file: only a dead writer's may go.
    return lockfile.process_exists(pid) is not False


def _json_bytes(document: Mapping[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _pin_entry(pin: PinState) -> dict[str, Any]:
    return {
        "kdf": PIN_KDF,
        "iterations": pin.reference.iterations,
        "salt": pin.reference.salt.hex(),
        "digest": pin.reference.digest.hex(),
        "max_tries": pin.max_tries,
        "tries_remaining": pin.tries_remaining,
    }


def _state_document(pin: PinState, puk: PinState | None) -> dict[str, Any]:
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, "pin": _pin_entry(pin)}
    if puk is not None:
        document["puk"] = _pin_entry(puk)
    return document


def _pin_state(entry: object, file: Path, name: str) -> PinState:
    """The :class:`PinState` of ``state.json``'s ``name`` entry."""
    if not isinstance(entry, dict):
        raise StoreError("must be an object", path=file, field=name, value=entry)
    if entry.get("kdf") != PIN_KDF:
        raise StoreError(
            f"expected {PIN_KDF!r}", path=file, field=f"{name}.kdf", value=entry.get("kdf")
        )
    try:
        reference = PinReference(
            bytes.fromhex(entry["salt"]), bytes.fromhex(entry["digest"]), int(entry["iterations"])
        )
        return PinState(reference, int(entry["max_tries"]), int(entry["tries_remaining"]))
    except (KeyError, TypeError, ValueError) as error:
        raise StoreError(f"bad {name.upper()} state ({error!r})", path=file, field=name) from None


def _key_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def create(directory: str | os.PathLike[str], card: NewCard) -> CardStore:
    """Write a new card directory; ``directory`` must not exist or be empty."""
    path = Path(directory)
    if card.puk is not None and not card.applications.piv:
        raise StoreError(
            "a PUK needs a card with PIV", path=path, field="profile", value=card.applications.value
        )
    if path.exists() and any(path.iterdir()):
        raise StoreError("a new card needs an empty directory", path=path)
    _check_new(path, card)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    entries = []
    for number, files in enumerate(card.credentials, start=1):
        cert_name, key_name = f"cert-{number}.pem", f"key-{number}.pem"
        write_atomically(
            path / cert_name, files.certificate.public_bytes(serialization.Encoding.PEM), 0o644
        )
        write_atomically(path / key_name, _key_pem(files.key))
        entry = {"certificate": cert_name, "key": key_name}
        if files.label:
            entry["label"] = files.label
        entries.append(entry)
    data_objects = {}
    for object_id, content in card.data_objects.items():
        name = DATA_OBJECT_FILES[object_id]
        write_atomically(path / name, content, 0o644)
        data_objects[object_id.value.hex().upper()] = name
    for name, content in card.extra_files.items():
        write_atomically(path / name, content, 0o644)
    document: dict[str, Any] = {"format": CARD_FORMAT, "version": 1}
    if card.applications is not Applications.CAC:
        document.update(version=2, profile=card.applications.value)
    document |= {
        "card_id": card.card_id.hex(),
        "atr": card.atr.hex().upper(),
        "credentials": entries,
    }
    if data_objects:
        document["data_objects"] = data_objects
    store = CardStore(path)
    store._write_state(card.pin, card.puk)
    write_atomically(path / CARD_FILE, _json_bytes(document), 0o644)
    store.load_profile()  # what was written must load
    return store


def _check_new(path: Path, card: NewCard) -> None:
    """Refuse, before anything is written, a card the profile cannot hold."""
    try:
        held = tuple(
            credential(files.certificate, files.key, label=files.label, where=f"credential {i}")
            for i, files in enumerate(card.credentials, start=1)
        )
        CardProfile(held, card.card_id, card.atr, card.data_objects, card.applications)
    except SourceError as error:
        raise StoreError(error.reason, path=path, field=str(error.path)) from None
    except ProfileError as error:
        raise StoreError(error.reason, path=path, field=error.field, value=error.value) from None


def stable_piv_objects(
    card_id: bytes, applications: Applications = Applications.PIV
) -> dict[ObjectTag, bytes]:
    """The CCC and CHUID of the card with ``card_id`` and ``applications``: the same at every
    start, as a real card's, since hosts name the token after them (OpenSC's PIV serial is the
    CHUID's GUID). Neither is kept in the directory: an older one gets the CCC of its
    applications too (:func:`~cacard.profile.piv_capability_container`), which names no token."""
    guid = bytearray(hashlib.sha256(b"cacard CHUID GUID" + card_id).digest()[:16])
    guid[6] = (guid[6] & 0x0F) | 0x40  # an RFC 4122 version 4 (random) UUID: it names the card
    guid[8] = (guid[8] & 0x3F) | 0x80
    return {
        ObjectTag.CARD_CAPABILITY_CONTAINER: piv_capability_container(card_id, applications),
        ObjectTag.CHUID: CHUID(fasc_n(), bytes(guid), _CHUID_EXPIRATION).to_bytes(),
    }


class CardStore:
    """The card directory at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # The card's commands that may block run off the event loop: one writer at a time.
        self._writing = threading.RLock()

    # -- reading ----------------------------------------------------------------------------

    def _document(self, name: str, expected_format: str, versions: Sequence[int]) -> dict[str, Any]:
        file = self.path / name
        try:
            text = read_bounded(file, MAX_JSON_FILE)
        except FileNotFoundError:
            raise StoreError(f"no {name}: not a card directory", path=self.path) from None
        try:
            document = json.loads(text)
        except ValueError as error:
            raise StoreError(f"unreadable ({error})", path=file) from None
        if not isinstance(document, dict):
            raise StoreError("not a JSON object", path=file)
        if document.get("format") != expected_format:
            raise StoreError(
                f"expected {expected_format!r}",
                path=file,
                field="format",
                value=document.get("format"),
            )
        if document.get("version") not in versions:
            raise StoreError(
                f"this cacard reads version {' or '.join(map(str, versions))}",
                path=file,
                field="version",
                value=document.get("version"),
            )
        return document

    def load_profile(self) -> CardProfile:
        """The card's contents; raises :class:`StoreError`."""
        file = self.path / CARD_FILE
        document = self._document(CARD_FILE, CARD_FORMAT, CARD_VERSIONS)
        applications = self._applications(document, file)
        card_id = _hex(document, "card_id", file)
        atr = _hex(document, "atr", file) if "atr" in document else CAC_ATR
        if (problem := atr_problem(atr)) is not None:
            raise StoreError(problem, path=file, field="atr", value=atr.hex())
        entries = document.get("credentials")
        if not isinstance(entries, list):
            raise StoreError("must be a list", path=file, field="credentials", value=entries)
        credentials = tuple(self._credential(i, entry) for i, entry in enumerate(entries))
        data_objects = self._data_objects(document.get("data_objects", {}), file)
        try:
            return CardProfile(credentials, card_id, atr, data_objects, applications)
        except ProfileError as error:
            raise StoreError(
                error.reason, path=file, field=error.field, value=error.value
            ) from None

    @staticmethod
    def _applications(document: Mapping[str, Any], file: Path) -> Applications:
        if document["version"] == 1:
            if "profile" in document:
                raise StoreError(
                    "version 1 has no profile (version 2 does)",
                    path=file,
                    field="profile",
                    value=document["profile"],
                )
            return Applications.CAC
        value = document.get("profile")
        try:
            return Applications(value)
        except ValueError:
            known = ", ".join(a.value for a in Applications)
            raise StoreError(
                f"must be one of {known}", path=file, field="profile", value=value
            ) from None

    def _credential(self, index: int, entry: object) -> Credential:
        file = self.path / CARD_FILE
        where = f"credentials[{index}]"
        if not isinstance(entry, dict):
            raise StoreError("must be an object", path=file, field=where, value=entry)
        names = {part: self._named_file(entry.get(part), f"{where}.{part}") for part in _PARTS}
        label = entry.get("label", "")
        if not isinstance(label, str):
            raise StoreError("must be a string", path=file, field=f"{where}.label", value=label)
        contents = {
            part: self._read_named(name, MAX_CREDENTIAL_FILE) for part, name in names.items()
        }
        try:
            return credential(
                parse_certificate(contents["certificate"], where=names["certificate"]),
                parse_private_key(contents["key"], where=names["key"]),
                label=label,
                where=names["key"],
            )
        except SourceError as error:
            raise StoreError(error.reason, path=Path(error.path), field=where) from None

    def _named_file(self, name: object, where: str) -> Path:
        """The file card.json's ``where`` names: a path inside the card directory, once links
        are followed. The directory is the card: a file elsewhere would not move with it, and
        a card.json from elsewhere could make the card read, and serve the guest as a data
        object, any file this process may read."""
        file = self.path / CARD_FILE
        if not isinstance(name, str) or not name:
            raise StoreError("must name a file", path=file, field=where, value=name)
        try:
            target = (self.path / name).resolve()
            inside = target.is_relative_to(self.path.resolve()) and target != self.path.resolve()
        except (OSError, ValueError, RuntimeError):  # a NUL byte, a link loop
            inside = False
        if not inside:
            raise StoreError(
                "must name a file inside the card directory", path=file, field=where, value=name
            )
        return self.path / name

    def _read_named(self, file: Path, limit: int) -> bytes:
        try:
            return read_bounded(file, limit)
        except FileNotFoundError as error:
            raise StoreError(f"unreadable ({error.strerror})", path=file) from None

    def _data_objects(self, entries: object, file: Path) -> dict[DataObjectId, bytes]:
        if not isinstance(entries, dict):
            raise StoreError("must be an object", path=file, field="data_objects", value=entries)
        known = {object_id.value.hex().upper(): object_id for object_id in DataObjectId}
        found = {}
        for key, name in entries.items():
            object_id = known.get(str(key).upper())
            if object_id is None:
                raise StoreError(
                    f"unknown data object (known: {', '.join(known)})",
                    path=file,
                    field="data_objects",
                    value=key,
                )
            named = self._named_file(name, f"data_objects.{key}")
            found[object_id] = self._read_named(named, MAX_DATA_OBJECT_FILE)
        return found

    def _states(self) -> tuple[PinState, PinState | None]:
        file = self.path / STATE_FILE
        document = self._document(STATE_FILE, STATE_FORMAT, (STATE_VERSION,))
        pin = _pin_state(document.get("pin"), file, "pin")
        puk = None
        if "puk" in document:
            puk = _pin_state(document["puk"], file, "puk")
        return pin, puk

    def load_state(self) -> CardState:
        """The PIN state; raises :class:`StoreError`."""
        return CardState(self._states()[0])

    def load_puk(self) -> PinState | None:
        """The PIV PUK's state; None when the card keeps none (its PUK opens nothing)."""
        return self._states()[1]

    def _piv_document(self) -> _PIVDocument:
        """``piv.json``, or an empty document when the PIV application changed nothing yet."""
        file = self.path / PIV_FILE
        if not file.exists():
            return _PIVDocument()
        document = self._document(PIV_FILE, PIV_FORMAT, (PIV_VERSION,))
        generation = document.get("generation")
        if type(generation) is not int or not 0 <= generation <= MAX_PIV_GENERATION:
            raise StoreError(
                f"must be a whole number 0-{MAX_PIV_GENERATION}",
                path=file,
                field="generation",
                value=generation,
            )
        keys: dict[KeyReference, str] = {}
        for text, name in _entries(document, "keys", file).items():
            reference = _piv_id(text, 1, file, "keys")
            if reference not in PIV_KEY_REFERENCES:
                raise StoreError("not a PIV key reference", path=file, field="keys", value=text)
            keys[KeyReference(reference)] = _piv_name(
                name, functools.partial(_key_file, reference), generation, file, f"keys.{text}"
            )
        objects: dict[ObjectTag, str | None] = {}
        for text, name in _entries(document, "objects", file).items():
            try:
                tag = ObjectTag(_piv_id(text, 3, file, "objects"))
            except ValueError:
                raise StoreError(
                    "not a PIV object tag", path=file, field="objects", value=text
                ) from None
            objects[tag] = (
                None
                if name is None
                else _piv_name(
                    name, functools.partial(_object_file, tag), generation, file, f"objects.{text}"
                )
            )
        return _PIVDocument(generation, keys, objects)

    def load_piv(self) -> PIVKept:
        """What the card's PIV application changed and the card kept; raises :class:`StoreError`."""
        document = self._piv_document()
        return PIVKept(
            {ref: self._kept_key(ref, name) for ref, name in document.keys.items()},
            {
                tag: None if name is None else self._read_bounded(name, MAX_PIV_OBJECT)
                for tag, name in document.objects.items()
            },
        )

    def _read_bounded(self, name: str, limit: int) -> bytes:
        return self._read_named(self.path / name, limit)

    def _kept_key(self, reference: KeyReference, name: str) -> PrivateKeyTypes:
        file = self.path / name
        try:
            key = parse_private_key(self._read_bounded(name, MAX_PIV_KEY_FILE), where=file)
            key_algorithm(software_key(key))
        except SourceError as error:
            raise StoreError(error.reason, path=file) from None
        except (PIVKeyError, UnsupportedKeyError) as error:
            raise StoreError(
                f"not a key PIV holds ({error})", path=file, field="key", value=f"{reference:02X}"
            ) from None
        return key

    # -- writing ----------------------------------------------------------------------------

    def _write_state(self, pin: PinState, puk: PinState | None) -> None:
        write_atomically(self.path / STATE_FILE, _json_bytes(_state_document(pin, puk)))

    def save_state(self, state: CardState) -> None:
        """Write ``state`` atomically (and durably: it is on disk when this returns); the PUK
        stays as it is."""
        with self._writing:
            self._write_state(state.pin, self.load_puk())

    def save_puk(self, puk: PinState) -> None:
        """Write the PUK's state atomically and durably; the PIN stays as it is."""
        with self._writing:
            self._write_state(self._states()[0], puk)

    def save_states(self, pin: PinState, puk: PinState | None) -> None:
        """Write the PIN's and the PUK's state (None: none kept) in one atomic write."""
        with self._writing:
            self._write_state(pin, puk)

    def _piv_changed(self, change: PIVChange) -> None:
        """Keep what the PIV application changed before it answers (raises: it answers 6581)."""
        with self._writing:
            if isinstance(change, PukChanged):
                self.save_puk(change.state)
                return
            # Read at every change: piv.json is the truth, whichever CardStore wrote it last.
            document = self._piv_document()
            generation = document.generation + 1
            keys, objects = dict(document.keys), dict(document.objects)
            replaced: str | None
            if isinstance(change, KeyGenerated):
                name = _key_file(change.reference, generation)
                write_atomically(self.path / name, _key_pem(change.private_key))
                replaced = keys.get(change.reference)
                keys[change.reference] = name
            else:
                if change.content is not None and len(change.content) > MAX_PIV_OBJECT:
                    raise StoreError(
                        f"a PIV object is at most {MAX_PIV_OBJECT} bytes",
                        path=self.path,
                        field=f"objects.{change.tag:06X}",
                        value=len(change.content),
                    )
                new_name: str | None = None
                if change.content is not None:
                    new_name = _object_file(change.tag, generation)
                    write_atomically(self.path / new_name, change.content)
                replaced = objects.get(change.tag)
                objects[change.tag] = new_name
            updated = _PIVDocument(generation, keys, objects)
            write_atomically(self.path / PIV_FILE, _json_bytes(updated.to_json()))
            if replaced is not None:
                self._remove(self.path / replaced)
            log.info("cacard.piv_kept", change=type(change).__name__, generation=generation)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the card for this process; raise :class:`CardInUseError` if another holds it.

        Two processes serving one card would each count PIN tries on their own.
        """
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(lockfile.hold(self.path))
            except lockfile.LockHeld as error:
                detail = f" ({error})" if str(error) else ""
                raise CardInUseError(
                    f"another process is serving this card{detail}", path=self.path
                ) from None
            self._remove_stale_temporaries()
            self._remove_unnamed_piv_files()
            yield

    def _remove(self, entry: Path) -> bool:
        try:
            entry.unlink()
        except FileNotFoundError:
            return False
        except OSError as error:  # a leftover file must not keep the card from serving
            log.warning("cacard.stale_file_kept", path=str(entry), error=str(error))
            return False
        return True

    def _remove_stale_temporaries(self) -> None:
        """Remove the temporaries of writers that died before their rename.

        Only with the card held: a writer of the card's files holds it too, except
        :func:`create` and callers of :meth:`save_state` without :meth:`lock`, so a file whose
        process still exists stays (a reused pid only delays the removal).
        """
        for entry in self.path.iterdir():
            match = _TEMPORARY.fullmatch(entry.name)
            if match is None or _process_exists(pid := int(match["pid"])):
                continue
            if self._remove(entry):
                log.info("cacard.stale_file_removed", path=str(entry), writer_pid=pid)

    def _remove_unnamed_piv_files(self) -> None:
        """Remove the key and object files ``piv.json`` does not name: written by a process
        that died before ``piv.json`` named them, or replaced by one that died before removing
        them. Only with the card held, and never when ``piv.json`` cannot be read."""
        try:
            named = self._piv_document().names()
        except StoreError:
            return
        for entry in self.path.iterdir():
            unnamed = _PIV_NAME.fullmatch(entry.name) and entry.name not in named
            if unnamed and self._remove(entry):
                log.info("cacard.stale_file_removed", path=str(entry))

    def open_card(self) -> Card:
        """The card, powered, with the applications of its profile, persisting every change of
        the card PIN's state into ``state.json`` (PIV's application PIN is that PIN) and, on a
        card with PIV, of the PUK (``state.json``) and of keys and objects (``piv.json``)."""
        profile = self.load_profile()
        pin, puk = self._states()
        if not profile.applications.piv:
            return new_card(profile, pin, on_state_change=self.save_state)
        kept = self.load_piv()
        deleted = {tag for tag, content in kept.objects.items() if content is None}
        # A kept key replaces the credential's; the slot keeps the credential's certificate
        # until PUT DATA replaces or deletes it, as the card answered before the restart.
        slots = {
            reference: SlotKey(held.key, held.certificate.public_bytes(serialization.Encoding.DER))
            for reference, held in zip(PIV_KEYS, profile.credentials, strict=False)
        }
        for reference, key in kept.keys.items():
            previous = slots.get(reference)
            slots[reference] = SlotKey(
                software_key(key), None if previous is None else previous.certificate
            )
        for reference, slot in slots.items():
            if reference.certificate_object in deleted:
                slots[reference] = SlotKey(slot.key)
        objects = {
            tag: content
            for tag, content in stable_piv_objects(profile.card_id, profile.applications).items()
            if tag not in deleted
        }
        objects |= {tag: content for tag, content in kept.objects.items() if content is not None}
        # The applet makes these itself; deleted, they read back empty (it takes no absence).
        objects |= dict.fromkeys(deleted & _APPLET_OBJECTS, b"")
        applet = piv_applet(profile, puk, keys=slots, objects=objects, on_change=self._piv_changed)
        return new_card(profile, pin, on_state_change=self.save_state, piv=applet)


def _entries(document: Mapping[str, Any], name: str, file: Path) -> dict[str, Any]:
    entries = document.get(name, {})
    if not isinstance(entries, dict):
        raise StoreError("must be an object", path=file, field=name, value=entries)
    return entries


def _piv_id(text: str, size: int, file: Path, where: str) -> int:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise StoreError(f"must be {size} bytes in hex", path=file, field=where, value=text)
    return int.from_bytes(raw, "big")


def _key_file(reference: int, generation: int) -> str:
    return f"piv-key-{reference:02x}.{generation}.pem"


def _object_file(tag: int, generation: int) -> str:
    return f"piv-object-{tag:06x}.{generation}.bin"


def _piv_name(
    name: object, file_name: Callable[[int], str], generation: int, file: Path, where: str
) -> str:
    """A file name ``piv.json`` may hold: the one the card writes for that key or object
    (``file_name`` of a generation), of a generation not above the document's. Never a path
    elsewhere, nor another entry's file or a later change's, which the card would overwrite
    and then remove as the file it replaced."""
    match = _PIV_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None or int(match[2]) > generation or name != file_name(int(match[2])):
        raise StoreError(
            f"must name {file_name(generation)} or an earlier generation of it",
            path=file,
            field=where,
            value=name,
        )
    return name


def _hex(document: Mapping[str, Any], key: str, file: Path) -> bytes:
    value = document.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise StoreError("must be a hex string", path=file, field=key, value=value) from None
