"""A CAC (GSC-IS 2.1) smart-card emulator: the card OpenSC and libcacard's users know.

The layers, bottom up:

- :class:`CommandAPDU`, :class:`Response`, :class:`StatusWord` (:mod:`cardfloor.iso7816.apdu`) and
  SimpleTLV (:mod:`cacard.tlv`): the wire formats.
- :class:`Card`: ATR, power, logical channels, GET RESPONSE chaining; its pure
  ``transmit(apdu) -> response`` never raises. The applets (:mod:`cacard.applets`) and the PIN
  (:mod:`cacard.pin`) sit behind it.
- :class:`CardProfile` and :func:`new_card`: a CAC, PIV or CAC+PIV card from certificates with
  keys (:class:`Credential`, whose :class:`CardKey` or :class:`ECCardKey` does the private-key
  operation).
- :class:`CardStore` (a card directory), :func:`generate_card` (``cacard new``) and
  :mod:`cacard.sources` (PEM, DER, PKCS#12 files).
- :func:`open_backend`: the card a :class:`CardDirectory`, an :class:`NssDatabase`
  (:mod:`cacard.nss`) or a :class:`Pkcs11Token` (:mod:`cacard.pkcs11`) backs, with its PIN.
- :data:`CAC_ATR` (libcacard's, T=0), :data:`CAC_ATR_T1` and :data:`PIV_ATR` (T=0 and T=1):
  :mod:`cacard.atr`.
- :func:`serve_vpcd`: the card served to a local pcscd through vsmartcard's vpcd.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord
from cardfloor.lazy import lazy_exports

from .atr import CAC_ATR, CAC_ATR_T1, PIV_ATR
from .backends import (
    Backend,
    BackendError,
    CardDirectory,
    NssDatabase,
    Pkcs11Token,
    open_backend,
)
from .card import Card, CardState
from .generate import CardRequest, generate_card
from .keys import CardKey, Credential, ECCardKey, KeyOperationError
from .pin import PinState
from .profile import CardProfile, ProfileError, new_card
from .store import CardInUseError, CardStore, StoreError

if TYPE_CHECKING:
    from .vpcd import VpcdConnection, serve_vpcd


# The vpcd bridge is an asyncio server: loaded on first use, so that the card imports alone.
__getattr__, __dir__ = lazy_exports(
    __name__, globals(), dict.fromkeys(("VpcdConnection", "serve_vpcd"), ".vpcd")
)


__all__ = [
    "CAC_ATR",
    "CAC_ATR_T1",
    "PIV_ATR",
    "Backend",
    "BackendError",
    "Card",
    "CardDirectory",
    "CardInUseError",
    "CardKey",
    "CardProfile",
    "CardRequest",
    "CardState",
    "CardStore",
    "CommandAPDU",
    "Credential",
    "ECCardKey",
    "KeyOperationError",
    "NssDatabase",
    "PinState",
    "Pkcs11Token",
    "ProfileError",
    "Response",
    "StatusWord",
    "StoreError",
    "VpcdConnection",
    "generate_card",
    "new_card",
    "open_backend",
    "serve_vpcd",
]
