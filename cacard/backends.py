"""What a served card is backed by: a card directory, an NSS database or a PKCS#11 token.

A backend is a description, a frozen dataclass checked when built; :func:`open_backend` turns it
into a powered :class:`~cacard.card.Card` for as long as a ``with`` block lasts, and holds
whatever the card needs meanwhile (the directory's lock, the token's session).

=================  ==========================================  =============================
backend            card PIN                                    PIN retry counter
=================  ==========================================  =============================
CardDirectory      the card's own (``state.json``)             ``state.json``: survives
                                                               restarts, a blocked card stays
                                                               blocked
NssDatabase        ``pin``, else the database password         in memory
                   (libcacard's rule), else 77777777
Pkcs11Token        ``pin``, else the token's user PIN,         in memory
                   else 77777777
=================  ==========================================  =============================

A card PIN is 4-8 digits (OpenSC sends no other): a database password or token PIN that is not
needs an explicit ``pin``. The card checks VERIFY itself, against a salted hash made at start;
the token or database was opened once, with the right secret, so wrong PINs sent to the card
spend the card's tries, never the token's own (a guest guessing PINs cannot lock a hardware
token). CHANGE REFERENCE DATA changes the card PIN until the card is closed; it does not change
the database password or the token PIN.

**Why the counter of an NSS or token card lives in memory.** The counter stops guessing through
the card (from a PC/SC application, a VM guest), and it does for as long as the card is served.
Restarting the server is the administrator's unblock: whoever can do it must hand over the
database password or the token PIN (or has a database whose keys no password protects), so a
persisted counter would stop nobody who could clear it. Persisting it "next to" the source has
no good place: ``/etc/pki/nssdb`` is shared with every NSS application and usually not writable
by the server, a token is not ours to write objects into, and a password changed with
``certutil -W`` would leave a stale PIN hash behind. A card directory has its own state file,
which is why it persists there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cardfloor.log import get_logger

from .atr import CAC_ATR
from .card import Card
from .keys import Credential
from .nss import NssError, load_nss
from .pin import DEFAULT_MAX_TRIES, DEFAULT_PIN, PinFormatError, PinState, check_pin
from .profile import CardProfile, ProfileError, card_id_from_certificate, new_card
from .rsa import UnsupportedKeyError
from .store import CardStore, StoreError

log = get_logger(__name__)

__all__ = [
    "Backend",
    "BackendError",
    "CardDirectory",
    "NssDatabase",
    "Pkcs11Token",
    "open_backend",
]

#: The most tries a PIN can have: ``63Cx`` has one nibble for them.
MAX_TRIES: Final = 15
#: Where the card's PIN came from, as logged when a backend opens.
PIN_FROM_OPTION: Final = "option"
PIN_FROM_SECRET: Final = "secret"
PIN_FROM_DEFAULT: Final = "default"


class BackendError(Exception):
    """A backend that gives no card; the message names the backend and says why."""


def _check_pin_options(pin: str | None, max_tries: int) -> None:
    if pin is not None:
        check_pin(pin)
    if not 1 <= max_tries <= MAX_TRIES:
        raise ValueError(f"a PIN has 1 to {MAX_TRIES} tries (one nibble of 63Cx), not {max_tries}")


@dataclass(frozen=True)
class CardDirectory:
    """A card directory (``cacard new``, ``cacard import``): see :mod:`cacard.store`."""

    path: Path

    @property
    def description(self) -> str:
        return f"card directory {self.path}"


@dataclass(frozen=True)
class NssDatabase:
    """Certificates and keys by nickname from an NSS database, as libcacard users keep them.

    ``db`` is ``sql:DIR`` (or ``dbm:DIR``); ``nicknames`` are in card order (PKI applet 0, 1...).
    ``password`` opens the database if it has one. See :func:`cacard.nss.load_nss`.
    """

    db: str
    nicknames: tuple[str, ...]
    password: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    max_tries: int = DEFAULT_MAX_TRIES
    atr: bytes = CAC_ATR

    def __post_init__(self) -> None:
        if not self.nicknames:
            raise ValueError(f"{self.description}: name at least one certificate nickname")
        _check_pin_options(self.pin, self.max_tries)

    @property
    def description(self) -> str:
        return f"NSS database {self.db} ({', '.join(self.nicknames)})"


@dataclass(frozen=True)
class Pkcs11Token:
    """RSA certificates whose keys stay on a PKCS#11 token. See :func:`cacard.pkcs11.open_token`.

    ``token_label`` picks the token when the module has several; ``labels`` picks certificates
    by ``CKA_LABEL`` in card order (default: every RSA certificate with its key, by
    ``CKA_ID``); ``token_pin`` is the user PIN (None for a token without login).
    """

    module: str
    token_label: str | None = None
    labels: tuple[str, ...] | None = None
    token_pin: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    max_tries: int = DEFAULT_MAX_TRIES
    atr: bytes = CAC_ATR

    def __post_init__(self) -> None:
        _check_pin_options(self.pin, self.max_tries)

    @property
    def description(self) -> str:
        token = f"token {self.token_label!r}" if self.token_label else "token"
        return f"PKCS#11 {token} of {self.module}"


Backend = CardDirectory | NssDatabase | Pkcs11Token


@contextlib.contextmanager
def open_backend(backend: Backend) -> Iterator[Card]:
    """The card ``backend`` describes, powered, until the ``with`` block ends.

    Raises :class:`BackendError` when the backend gives no card; what the block raises passes
    through unchanged.
    """
    opened: contextlib.AbstractContextManager[Card]
    if isinstance(backend, CardDirectory):
        opened = _open_directory(backend)
    elif isinstance(backend, NssDatabase):
        opened = _open_nss(backend)
    else:
        opened = _open_token(backend)
    with opened as card:
        yield card


@contextlib.contextmanager
def _open_directory(backend: CardDirectory) -> Iterator[Card]:
    store = CardStore(backend.path)
    with contextlib.ExitStack() as held:
        try:
            store.load_state()  # not a card directory: say so, and leave no lock file in it
            held.enter_context(store.lock())  # one server per card: two would count tries apart
            card = store.open_card()
        except (StoreError, OSError) as error:
            raise BackendError(str(error)) from error
        log.info("cacard.backend_opened", backend=backend.description, pin_counter="state.json")
        yield card


def _card_pin(backend: NssDatabase | Pkcs11Token, secret: str | None, what: str) -> str:
    """The card PIN: the explicit one, else the backend's secret, else the default."""
    if backend.pin is not None:
        source, pin = PIN_FROM_OPTION, backend.pin
    elif secret is not None:
        source, pin = PIN_FROM_SECRET, secret
        try:
            check_pin(pin)
        except PinFormatError as error:
            raise BackendError(
                f"{backend.description}: the {what} cannot be the card PIN ({error}; OpenSC "
                "sends 4-8 digits): give the card a PIN of its own"
            ) from None
    else:
        source, pin = PIN_FROM_DEFAULT, DEFAULT_PIN
    log.info("cacard.card_pin", backend=backend.description, pin_from=source)
    return pin


def _card(
    backend: NssDatabase | Pkcs11Token,
    credentials: tuple[Credential, ...],
    secret: str | None,
    what: str,
) -> Card:
    """A card with ``credentials``, its PIN chosen by :func:`_card_pin`, its counter in memory."""
    if not credentials:
        raise BackendError(f"{backend.description}: no RSA certificate with its private key")
    try:
        profile = CardProfile(
            credentials, card_id_from_certificate(credentials[0].certificate), backend.atr
        )
    except ProfileError as error:
        raise BackendError(f"{backend.description}: {error}") from None
    state = PinState.create(_card_pin(backend, secret, what), max_tries=backend.max_tries)
    log.info("cacard.backend_opened", backend=backend.description, pin_counter="memory")
    return new_card(profile, state)


@contextlib.contextmanager
def _open_nss(backend: NssDatabase) -> Iterator[Card]:
    try:
        nss = load_nss(backend.db, backend.nicknames, backend.password)
    except (NssError, UnsupportedKeyError) as error:
        raise BackendError(str(error)) from error
    # NssCard.pin is the database password, or None when the database has none.
    yield _card(backend, nss.credentials, nss.pin, "database password")


@contextlib.contextmanager
def _open_token(backend: Pkcs11Token) -> Iterator[Card]:
    try:
        from .pkcs11 import TokenError, open_token
    except ImportError as error:  # python-pkcs11 is the optional 'pkcs11' extra
        raise BackendError(f"{backend.description}: python-pkcs11 is not installed") from error
    try:
        token = open_token(
            backend.module,
            pin=backend.token_pin,
            token_label=backend.token_label,
            labels=backend.labels,
        )
    except (TokenError, UnsupportedKeyError) as error:
        raise BackendError(f"{backend.description}: {error}") from error
    with token:
        yield _card(backend, token.credentials, backend.token_pin, "token PIN")
