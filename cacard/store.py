"""A card kept in a directory: certificates, keys and data objects that never change, and the
PIN state, which is rewritten atomically whenever it changes, so a blocked card stays blocked.

Layout (card format versions 1 and 2)::

    DIR/
      card.json       what the card holds (written once)
      state.json      the PIN reference data and retry counter (rewritten atomically)
      cert-1.pem      one certificate and its private key per PKI applet, in order;
      key-1.pem       the file names are whatever card.json says
      person-instance.tlv   content of a data object (SimpleTLV), if any
      ca.pem          (cacard new only) the test CA that issued the certificates
      .lock           locked while a process serves the card (.lock.pid where neither
                      flock nor msvcrt.locking exists: cacard.lockfile)
      .state.json.PID.tmp   state.json being written by process PID; left by a crash, it is
                            removed the next time a process takes the card and PID is gone

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
0600: the directory is the card, so protect it like a private key.

``state.json``::

    {"format": "cacard-state", "version": 1,
     "pin": {"kdf": "pbkdf2-hmac-sha256", "iterations": 100000, "salt": "<hex>",
             "digest": "<hex>", "max_tries": 3, "tries_remaining": 3}}

The PIN itself is never stored, only a salted PBKDF2 of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
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
from .profile import Applications, CardProfile, ProfileError, new_card
from .sources import SourceError, credential, load_certificate, load_private_key

log = get_logger(__name__)

CARD_FILE: Final = "card.json"
STATE_FILE: Final = "state.json"
LOCK_FILE: Final = lockfile.LOCK_FILE
CARD_FORMAT: Final = "cacard-card"
STATE_FORMAT: Final = "cacard-state"
#: card.json versions: 1 is a CAC card; 2 adds ``profile``.
CARD_VERSIONS: Final = (1, 2)
STATE_VERSION: Final = 1
PIN_KDF: Final = "pbkdf2-hmac-sha256"
#: Suggested file names of data object contents.
DATA_OBJECT_FILES: Final = {
    object_id: object_id.label.lower().replace(" ", "-") + ".tlv" for object_id in DataObjectId
}


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


def _temporary_name(name: str, pid: int) -> str:
    """Where process ``pid`` writes ``name`` before renaming it into place."""
    return f".{name}.{pid}.tmp"


#: :func:`_temporary_name` of ``state.json``, any pid (Linux's are below 2**22).
_STATE_TEMPORARY: Final = re.compile(rf"\.{re.escape(STATE_FILE)}\.([1-9][0-9]{{0,6}})\.tmp")


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file, whole.

    A crash before the rename leaves the temporary file behind: :meth:`CardStore.lock`
    removes those of ``state.json``.
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


def _state_document(state: CardState) -> dict[str, Any]:
    pin = state.pin
    return {
        "format": STATE_FORMAT,
        "version": STATE_VERSION,
        "pin": {
            "kdf": PIN_KDF,
            "iterations": pin.reference.iterations,
            "salt": pin.reference.salt.hex(),
            "digest": pin.reference.digest.hex(),
            "max_tries": pin.max_tries,
            "tries_remaining": pin.tries_remaining,
        },
    }


def create(directory: str | os.PathLike[str], card: NewCard) -> CardStore:
    """Write a new card directory; ``directory`` must not exist or be empty."""
    path = Path(directory)
    if path.exists() and any(path.iterdir()):
        raise StoreError("a new card needs an empty directory", path=path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    entries = []
    for number, files in enumerate(card.credentials, start=1):
        cert_name, key_name = f"cert-{number}.pem", f"key-{number}.pem"
        write_atomically(
            path / cert_name, files.certificate.public_bytes(serialization.Encoding.PEM), 0o644
        )
        key_pem = files.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path / key_name, key_pem)
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
    store.save_state(CardState(card.pin))
    write_atomically(path / CARD_FILE, _json_bytes(document), 0o644)
    store.load_profile()  # what was written must load
    return store


class CardStore:
    """The card directory at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    # -- reading ----------------------------------------------------------------------------

    def _document(self, name: str, expected_format: str, versions: Sequence[int]) -> dict[str, Any]:
        file = self.path / name
        try:
            document = json.loads(file.read_text())
        except FileNotFoundError:
            raise StoreError(f"no {name}: not a card directory", path=self.path) from None
        except (OSError, ValueError) as error:
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
        return self._load()[0]

    def _load(self) -> tuple[CardProfile, tuple[PrivateKeyTypes, ...]]:
        """The card's contents and the private key of each credential."""
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
        loaded = [self._credential(i, entry) for i, entry in enumerate(entries)]
        credentials = tuple(held for held, _ in loaded)
        data_objects = self._data_objects(document.get("data_objects", {}), file)
        try:
            profile = CardProfile(credentials, card_id, atr, data_objects, applications)
        except ProfileError as error:
            raise StoreError(
                error.reason, path=file, field=error.field, value=error.value
            ) from None
        return profile, tuple(key for _, key in loaded)

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

    def _credential(self, index: int, entry: object) -> tuple[Credential, PrivateKeyTypes]:
        file = self.path / CARD_FILE
        where = f"credentials[{index}]"
        if not isinstance(entry, dict):
            raise StoreError("must be an object", path=file, field=where, value=entry)
        names = {}
        for part in ("certificate", "key"):
            name = entry.get(part)
            if not isinstance(name, str) or not name:
                raise StoreError("must name a file", path=file, field=f"{where}.{part}", value=name)
            names[part] = self.path / name
        label = entry.get("label", "")
        if not isinstance(label, str):
            raise StoreError("must be a string", path=file, field=f"{where}.label", value=label)
        try:
            key = load_private_key(names["key"])
            held = credential(
                load_certificate(names["certificate"]), key, label=label, where=names["key"]
            )
        except SourceError as error:
            raise StoreError(error.reason, path=Path(error.path), field=where) from None
        return held, key

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
            if not isinstance(name, str):
                raise StoreError(
                    "must name a file", path=file, field=f"data_objects.{key}", value=name
                )
            try:
                found[object_id] = (self.path / name).read_bytes()
            except OSError as error:
                raise StoreError(str(error), path=self.path / name) from None
        return found

    def load_state(self) -> CardState:
        """The PIN state; raises :class:`StoreError`."""
        file = self.path / STATE_FILE
        pin = self._document(STATE_FILE, STATE_FORMAT, (STATE_VERSION,)).get("pin")
        if not isinstance(pin, dict):
            raise StoreError("must be an object", path=file, field="pin", value=pin)
        if pin.get("kdf") != PIN_KDF:
            raise StoreError(
                f"expected {PIN_KDF!r}", path=file, field="pin.kdf", value=pin.get("kdf")
            )
        try:
            reference = PinReference(
                bytes.fromhex(pin["salt"]), bytes.fromhex(pin["digest"]), int(pin["iterations"])
            )
            return CardState(
                PinState(reference, int(pin["max_tries"]), int(pin["tries_remaining"]))
            )
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f"bad PIN state ({error!r})", path=file, field="pin") from None

    # -- writing ----------------------------------------------------------------------------

    def save_state(self, state: CardState) -> None:
        """Write ``state`` atomically (and durably: it is on disk when this returns)."""
        write_atomically(self.path / STATE_FILE, _json_bytes(_state_document(state)))

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
            yield

    def _remove_stale_temporaries(self) -> None:
        """Remove the ``state.json`` temporaries of writers that died before their rename.

        Only with the card held: a writer of ``state.json`` holds it too, except :func:`create`
        and callers of :meth:`save_state` without :meth:`lock`, so a file whose process still
        exists stays (a reused pid only delays the removal).
        """
        for entry in self.path.iterdir():
            match = _STATE_TEMPORARY.fullmatch(entry.name)
            if match is None or _process_exists(pid := int(match[1])):
                continue
            try:
                entry.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:  # a leftover file must not keep the card from serving
                log.warning("cacard.stale_file_kept", path=str(entry), error=str(error))
                continue
            log.info("cacard.stale_file_removed", path=str(entry), writer_pid=pid)

    def open_card(self) -> Card:
        """The card, powered, with the applications of its profile, persisting every change of
        the card PIN's state into ``state.json`` (PIV's application PIN is that PIN)."""
        profile, _keys = self._load()
        return new_card(profile, self.load_state().pin, on_state_change=self.save_state)


def _hex(document: Mapping[str, Any], key: str, file: Path) -> bytes:
    value = document.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise StoreError("must be a hex string", path=file, field=key, value=value) from None
