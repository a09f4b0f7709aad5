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

``applications`` says which card applications the card has (CAC, PIV or both, see
:class:`~cacard.profile.Applications`); the credentials are in card order, CAC's PKI applets
taking the RSA ones and PIV's keys 9A, 9C, 9D, 9E the first four (RSA, P-256 or P-384). A
CAC-only card holds no EC key: a database nickname or token label that names one is refused,
with the hint to use a profile with PIV; a token's EC certificates found by default are left
out of it with a warning. A card with PIV keeps more state:

=================  ==========================  ===============================================
backend            PUK                         keys GENERATE makes, objects PUT DATA writes
=================  ==========================  ===============================================
CardDirectory      ``state.json`` (``cacard    ``piv.json`` and key files: survive restarts
                   new``, 3 tries)
NssDatabase        ``puk``, else blocked;      in memory: they replace the database's keys and
                   3 tries, in memory          certificates for the PIV application until the
                                               card is closed, then are lost
Pkcs11Token        ``puk``, else blocked;      in memory, as for NssDatabase; the key never
                   3 tries, in memory          goes onto the token
=================  ==========================  ===============================================

A blocked PUK (no ``puk``) is one no value opens, so no host can refill the PIN's counter with
it; restarting the server is the unblock, as for the PIN.

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
which is why it persists there. The same holds for the PUK's counter, and for generated keys
and written objects: to survive they would have to be written into the database or onto the
token, which are not the card's to change (an NSS database holds the user's certificates for
every NSS application; a generated key on a token would need a label, an id and a policy the
administrator chose).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cardfloor.log import get_logger

from .card import Card
from .generate import check_card_pin
from .keys import Credential, ECCardKey
from .nss import NssError, load_nss
from .pin import (
    DEFAULT_MAX_TRIES,
    DEFAULT_PIN,
    PUK_TRIES,
    PinFormatError,
    PinState,
    check_puk,
)
from .profile import (
    Applications,
    CardProfile,
    ProfileError,
    card_id_from_certificate,
    new_card,
    piv_applet,
)
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


def _check_options(backend: NssDatabase | Pkcs11Token) -> None:
    if backend.pin is not None:
        # On a card with PIV the card PIN is PIV's, whose VERIFY takes only 6 to 8 digits.
        check_card_pin(backend.pin, backend.applications)
    if not 1 <= backend.max_tries <= MAX_TRIES:
        raise ValueError(
            f"a PIN has 1 to {MAX_TRIES} tries (one nibble of 63Cx), not {backend.max_tries}"
        )
    if backend.puk is not None:
        if not backend.applications.piv:
            raise ValueError(
                f"{backend.description}: a PUK needs a card with PIV, "
                f"not applications={backend.applications.value}"
            )
        check_puk(backend.puk)


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

    ``db`` is ``sql:DIR`` (or ``dbm:DIR``); ``nicknames`` are in card order (PKI applet 0, 1...
    for RSA keys; PIV keys 9A, 9C, 9D, 9E on a card with PIV). ``password`` opens the database
    if it has one. See :func:`cacard.nss.load_nss`.
    """

    db: str
    nicknames: tuple[str, ...]
    password: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    max_tries: int = DEFAULT_MAX_TRIES
    applications: Applications = Applications.CAC
    #: None: ``applications.default_atr``.
    atr: bytes | None = None
    #: The PIV PUK (8 digits); None: a blocked one. Only on a card with PIV.
    puk: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.nicknames:
            raise ValueError(f"{self.description}: name at least one certificate nickname")
        _check_options(self)

    @property
    def description(self) -> str:
        return f"NSS database {self.db} ({', '.join(self.nicknames)})"


@dataclass(frozen=True)
class Pkcs11Token:
    """Certificates whose keys stay on a PKCS#11 token. See :func:`cacard.pkcs11.open_token`.

    ``token_label`` picks the token when the module has several; ``labels`` picks certificates
    by ``CKA_LABEL`` in card order (default: every RSA, P-256 and P-384 certificate with its
    key, by ``CKA_ID``; on a CAC-only card the RSA ones); ``token_pin`` is the user PIN (None
    for a token without login).
    """

    module: str
    token_label: str | None = None
    labels: tuple[str, ...] | None = None
    token_pin: str | None = field(default=None, repr=False)
    pin: str | None = field(default=None, repr=False)
    max_tries: int = DEFAULT_MAX_TRIES
    applications: Applications = Applications.CAC
    #: None: ``applications.default_atr``.
    atr: bytes | None = None
    #: The PIV PUK (8 digits); None: a blocked one. Only on a card with PIV.
    puk: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_options(self)

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
            check_card_pin(pin, backend.applications)
        except (PinFormatError, ProfileError) as error:
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
        raise BackendError(f"{backend.description}: no certificate with its private key")
    applications = backend.applications
    ec_labels = [c.label for c in credentials if isinstance(c.key, ECCardKey)]
    if ec_labels and not applications.piv:
        raise BackendError(
            f"{backend.description}: {', '.join(map(repr, ec_labels))} "
            f"{'has an EC key' if len(ec_labels) == 1 else 'have EC keys'}, which a CAC card "
            "cannot hold (OpenSC's CAC driver is RSA-only): use a profile with PIV "
            "(--profile piv or cac+piv)"
        )
    try:
        profile = CardProfile(
            credentials,
            card_id_from_certificate(credentials[0].certificate),
            applications.default_atr if backend.atr is None else backend.atr,
            applications=applications,
        )
    except ProfileError as error:
        hint = ""
        if error.field == "credentials" and isinstance(error.value, int):
            hint = " (pick certificates by nickname or label: --cert)"
        raise BackendError(f"{backend.description}: {error}{hint}") from None
    state = PinState.create(_card_pin(backend, secret, what), max_tries=backend.max_tries)
    log.info(
        "cacard.backend_opened",
        backend=backend.description,
        applications=applications.value,
        pin_counter="memory",
    )
    if not applications.piv:
        return new_card(profile, state)
    puk = None if backend.puk is None else PinState.create(backend.puk, max_tries=PUK_TRIES)
    return new_card(profile, state, piv=piv_applet(profile, puk))


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
        yield _card(backend, _usable(backend, token.credentials), backend.token_pin, "token PIN")


def _usable(backend: Pkcs11Token, credentials: tuple[Credential, ...]) -> tuple[Credential, ...]:
    """The token's credentials a card of ``backend``'s applications holds.

    Unless ``labels`` picked them, EC certificates are left out of a CAC-only card, as before
    EC keys were supported: a token with an EC key beside its RSA ones still gives a CAC card.
    """
    if backend.labels is not None or backend.applications.piv:
        return credentials
    kept = []
    for credential in credentials:
        if not isinstance(credential.key, ECCardKey):
            kept.append(credential)
            continue
        log.warning(
            "pkcs11_certificate_skipped",
            label=credential.label,
            reason="an EC key needs a card with PIV (--profile piv or cac+piv)",
        )
    return tuple(kept) or credentials  # only EC: _card says what to do
