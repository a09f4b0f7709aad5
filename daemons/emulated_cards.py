"""Emulated CAC cards (``cacard``) as local cards: card directories, NSS databases, PKCS#11
tokens. Each is opened through :func:`cacard.backends.open_backend`, whose table says what the
card PIN and its retry counter are for each."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import structlog

from cacard.backends import (
    Backend,
    BackendError,
    CardDirectory,
    NssDatabase,
    open_backend,
)
from cacard.card import Card

from .emul_options import EmulOptions

log = structlog.get_logger("daemons.vscclient")


class CardSourceError(Exception):
    """A card could not be loaded; the message says which and why."""


class EmulatedCard:
    """A :class:`cacard.card.Card` as a local card, and as a card in a :mod:`ccid` reader.

    A private-key operation or a PIN command runs in a worker thread: it takes milliseconds in
    memory and may take far longer on a PKCS#11 token, and the event loop must keep serving
    meanwhile. Every other APDU is answered inline: a thread hop costs more than the card's
    work (about 100 us per APDU on a loaded VM). The card handles one APDU at a time (the host
    sends one per reader), so the two never overlap.
    """

    def __init__(self, card: Card, name: str) -> None:
        self._card = card
        self.name = name

    @property
    def atr(self) -> bytes:
        return self._card.atr

    @property
    def protocol(self) -> int:
        """The transmission protocol the reader runs with the card (:attr:`Card.protocol`):
        0 unless a transport that knows sets 1."""
        return self._card.protocol

    @protocol.setter
    def protocol(self, value: int) -> None:
        self._card.protocol = value

    def power_on(self) -> None:
        self._card.power_on()

    def reset(self) -> None:
        """A reader powered the card up or down (``ccid.ICC``)."""
        self._card.power_on()

    async def cold_reset(self) -> None:
        self._card.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        if self._card.may_block(apdu):
            return await asyncio.to_thread(self._card.transmit, apdu)
        return self._card.transmit(apdu)


def open_backend_card(backend: Backend, name: str, stack: contextlib.ExitStack) -> EmulatedCard:
    """The card ``backend`` describes, held (lock, token session) for as long as ``stack``."""
    try:
        card = stack.enter_context(open_backend(backend))
    except (BackendError, OSError, ValueError) as error:
        raise CardSourceError(f"{backend.description}: {error}") from None
    log.info("vscclient.card_loaded", source=backend.description)
    return EmulatedCard(card, name)


def open_card_directory(directory: str, stack: contextlib.ExitStack) -> EmulatedCard:
    """The card in a ``cacard new`` / ``cacard import`` directory, locked while ``stack`` lives."""
    name = os.path.basename(os.path.normpath(directory)) or directory
    return open_backend_card(CardDirectory(Path(directory)), name, stack)


def open_nss_cards(
    options: EmulOptions,
    *,
    password: str | None,
    pin: str | None,
    stack: contextlib.ExitStack,
    puk: str | None = None,
) -> list[tuple[str, EmulatedCard]]:
    """One card per ``soft=(...)`` reader, its certificates and keys from the NSS database, its
    applications from the reader's card type.

    The card PIN is ``pin``, else the database password (libcacard's rule), else 77777777;
    unlike libcacard, which accepts any PIN for a database without a password, the card keeps a
    real PIN with a retry counter. ``puk`` is the PIV PUK of the cards with PIV (None: blocked).
    """
    cards = []
    for reader in options.soft_readers:
        if reader.slot:
            raise CardSourceError(
                f"soft=({reader.slot},...): NSS token slots other than the internal one are "
                "not supported; open a hardware token with --pkcs11 instead"
            )
        try:
            backend = NssDatabase(
                options.database,
                reader.certificates,
                password,
                pin,
                applications=reader.applications,
                puk=puk if reader.applications.piv else None,
            )
        except ValueError as error:
            raise CardSourceError(f"soft=(,{reader.name},...): {error}") from None
        cards.append((reader.name, open_backend_card(backend, reader.name, stack)))
    return cards
