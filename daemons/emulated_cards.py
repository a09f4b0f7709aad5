"""Emulated CAC cards (``cacard``) as local cards: from card directories and NSS databases."""

from __future__ import annotations

import asyncio
import contextlib
import os

import structlog

from cacard import CardProfile, CardStore, PinState, StoreError, new_card
from cacard.card import Card
from cacard.nss import NssError, load_nss
from cacard.pin import DEFAULT_PIN, PinFormatError
from cacard.profile import ProfileError, card_id_from_certificate
from cacard.rsa import UnsupportedKeyError

from .emul_options import EmulOptions

log = structlog.get_logger("daemons.vscclient")


class CardSourceError(Exception):
    """A card could not be loaded; the message says which and why."""


class EmulatedCard:
    """A :class:`cacard.card.Card` as a local card, and as a card in a :mod:`ccid` reader.

    ``transmit`` runs in a worker thread: a private-key operation takes milliseconds in memory
    and may take far longer on a PKCS#11 token, and the event loop must keep serving meanwhile.
    The card itself handles one APDU at a time (the host sends one per reader).
    """

    def __init__(self, card: Card, name: str) -> None:
        self._card = card
        self.name = name

    @property
    def atr(self) -> bytes:
        return self._card.atr

    def power_on(self) -> None:
        self._card.power_on()

    def reset(self) -> None:
        """A reader powered the card up or down (``ccid.Card``)."""
        self._card.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        return await asyncio.to_thread(self._card.transmit, apdu)


def open_card_directory(directory: str, stack: contextlib.ExitStack) -> EmulatedCard:
    """The card in a ``cacard new`` directory, held (flock) for as long as ``stack`` lives."""
    store = CardStore(directory)
    try:
        stack.enter_context(store.lock())
        card = store.open_card()
    except (StoreError, ProfileError, UnsupportedKeyError, OSError) as error:
        raise CardSourceError(f"--card {directory}: {error}") from None
    return EmulatedCard(card, os.path.basename(os.path.normpath(directory)) or directory)


def open_nss_cards(
    options: EmulOptions, *, password: str | None, pin: str | None
) -> list[tuple[str, EmulatedCard]]:
    """One card per ``soft=(...)`` reader, its certificates and keys read from the NSS DB.

    The card PIN is the database password, as in libcacard; a database without one gets
    ``pin`` (default 77777777). Unlike libcacard, which then accepts any PIN, the card keeps a
    real PIN with a retry counter.
    """
    cards = []
    for reader in options.soft_readers:
        if reader.slot:
            raise CardSourceError(
                f"soft=({reader.slot},...): NSS token slots other than the internal one are "
                "not supported; open a hardware token through PKCS#11 instead"
            )
        try:
            nss = load_nss(options.database, reader.certificates, password)
            card_pin = nss.pin or pin or DEFAULT_PIN
            profile = CardProfile(
                credentials=nss.credentials,
                card_id=card_id_from_certificate(nss.credentials[0].certificate),
            )
            card = new_card(profile, PinState.create(card_pin))
        except (NssError, ProfileError, UnsupportedKeyError, PinFormatError) as error:
            raise CardSourceError(
                f"soft=(,{reader.name},...) from {options.database}: {error}"
            ) from None
        log.info("vscclient.nss_card_loaded", reader=reader.name, certificates=len(nss.credentials))
        cards.append((reader.name, EmulatedCard(card, reader.name)))
    return cards
