"""The card's PIN: its reference data, the retry counter and whether it has been verified
(ISO/IEC 7816-4 §11.5.6 VERIFY, §11.5.7 CHANGE REFERENCE DATA).

Unlike libcacard, which hands the PIN to NSS and answers a wrong one with 6985, this card keeps a
retry counter as real CAC and PIV cards do: a wrong PIN answers ``63Cx`` (x tries left), the
last one ``63C0``, and from then on the PIN is blocked (``6983``) until an administrator
resets it (:meth:`PinState.unblocked`). A right PIN refills the counter.

The counter is decremented and handed to the persistence callback *before* the PIN is compared,
as smart cards do against tearing: a host that cuts the power (kills the process) right after
seeing the answer has still spent the try.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, verification_failed
from cardfloor.iso7816.instructions import P1_RESET_STATUS
from cardfloor.log import get_logger

log = get_logger(__name__)

#: libcacard's test PIN, and the default of ``cacard new``.
DEFAULT_PIN: Final = "77777777"
DEFAULT_MAX_TRIES: Final = 3
#: OpenSC's CAC PIN: 4 to 8 ASCII digits, padded with FF to 8 bytes.
MIN_PIN_LENGTH: Final = 4
MAX_PIN_LENGTH: Final = 8
PIN_PAD: Final = 0xFF
#: PBKDF2-HMAC-SHA256 rounds: about 20 ms per VERIFY here, nothing next to a human typing.
DEFAULT_ITERATIONS: Final = 100_000
#: The most rounds a reference may ask for (about 2 s per VERIFY): state.json is read back,
#: and a count without bound there would hang every VERIFY.
MAX_ITERATIONS: Final = 100 * DEFAULT_ITERATIONS
SALT_SIZE: Final = 16

#: The only PIN reference this card has (OpenSC's CAC PIN uses reference 00).
PIN_REFERENCE: Final = 0x00


class PinFormatError(ValueError):
    """A PIN that this card cannot hold; ``value`` is its length, never the PIN itself."""

    def __init__(self, reason: str, *, value: int) -> None:
        super().__init__(f"{reason}: pin length={value}")
        self.field = "pin"
        self.value = value


def check_pin(pin: str | bytes) -> bytes:
    """The PIN as the card compares it: 4 to 8 ASCII digits (FIPS 201 §4.1.6.1, OpenSC)."""
    raw = pin.encode("ascii", "replace") if isinstance(pin, str) else bytes(pin)
    if not MIN_PIN_LENGTH <= len(raw) <= MAX_PIN_LENGTH:
        raise PinFormatError(
            f"a PIN has {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} digits", value=len(raw)
        )
    if not raw.isdigit():
        raise PinFormatError("a PIN has only the digits 0-9", value=len(raw))
    return raw


#: A PIV PUK is exactly 8 digits (SP 800-73-4 Part 2 §2.4.3).
PUK_LENGTH: Final = MAX_PIN_LENGTH
#: Tries of the PUK (PIV middleware and yubico-piv-tool expect 3).
PUK_TRIES: Final = 3


def check_puk(puk: str) -> str:
    """``puk`` if a PIV card can hold it: exactly 8 digits (:class:`PinFormatError` naming its
    length, never the PUK, otherwise)."""
    try:
        raw = check_pin(puk)
    except PinFormatError as error:
        raise PinFormatError(f"a PUK has {PUK_LENGTH} digits", value=error.value) from None
    if len(raw) != PUK_LENGTH:
        raise PinFormatError(f"a PUK has {PUK_LENGTH} digits", value=len(raw))
    return puk


def _unpad(data: bytes) -> bytes:
    return data.rstrip(bytes((PIN_PAD,)))


@dataclass(frozen=True, slots=True)
class PinReference:
    """A salted PBKDF2-HMAC-SHA256 of the PIN: the PIN itself is never kept."""

    salt: bytes
    digest: bytes
    iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= MAX_ITERATIONS:
            raise ValueError(f"iterations must be 1..{MAX_ITERATIONS}, got {self.iterations}")
        if len(self.digest) != hashlib.sha256().digest_size:
            raise ValueError(f"digest must be 32 bytes, got {len(self.digest)}")

    @classmethod
    def create(
        cls,
        pin: str | bytes,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        salt: bytes | None = None,
    ) -> PinReference:
        """Reference data for ``pin`` (checked with :func:`check_pin`)."""
        raw = check_pin(pin)
        salt = os.urandom(SALT_SIZE) if salt is None else salt
        return cls(salt, _derive(raw, salt, iterations), iterations)

    def matches(self, candidate: bytes) -> bool:
        """Whether ``candidate`` is the PIN, compared in constant time."""
        return hmac.compare_digest(_derive(candidate, self.salt, self.iterations), self.digest)


def _derive(pin: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", pin, salt, iterations)


@dataclass(frozen=True, slots=True)
class PinState:
    """What must survive a restart: the reference data and the retry counter."""

    reference: PinReference
    max_tries: int = DEFAULT_MAX_TRIES
    tries_remaining: int = DEFAULT_MAX_TRIES

    def __post_init__(self) -> None:
        if not 1 <= self.max_tries <= 15:
            raise ValueError(f"max_tries must be 1..15 (one nibble of 63Cx), got {self.max_tries}")
        if not 0 <= self.tries_remaining <= self.max_tries:
            raise ValueError(
                f"tries_remaining must be 0..{self.max_tries}, got {self.tries_remaining}"
            )

    @classmethod
    def create(
        cls,
        pin: str | bytes = DEFAULT_PIN,
        *,
        max_tries: int = DEFAULT_MAX_TRIES,
        iterations: int = DEFAULT_ITERATIONS,
    ) -> PinState:
        """A fresh PIN with a full counter."""
        return cls(PinReference.create(pin, iterations=iterations), max_tries, max_tries)

    @property
    def blocked(self) -> bool:
        return self.tries_remaining == 0

    def unblocked(self, new_pin: str | bytes | None = None) -> PinState:
        """The administrator's reset: a full counter, and optionally a new PIN."""
        reference = self.reference
        if new_pin is not None:
            reference = PinReference.create(new_pin, iterations=reference.iterations)
        return replace(self, reference=reference, tries_remaining=self.max_tries)


#: Called with every new :class:`PinState` before the card answers; may raise to refuse it.
PinSink = Callable[[PinState], None]


class Pin:
    """VERIFY and CHANGE REFERENCE DATA against a :class:`PinState`.

    ``verified`` is the security status: set by a right PIN, cleared by a wrong one, by VERIFY
    with P1=FF and by :meth:`reset` (power off, reset). It never survives a restart.
    """

    def __init__(self, state: PinState, on_change: PinSink | None = None) -> None:
        self._state = state
        self._on_change = on_change
        self.verified = False

    @property
    def state(self) -> PinState:
        return self._state

    def reset(self) -> None:
        """Forget the verification (the card lost power or was reset)."""
        self.verified = False

    def verify(self, command: CommandAPDU) -> Response:
        """VERIFY: ``00 20 00 00 [Lc PIN‖FF…]``; without data, report the status."""
        if command.p1 == P1_RESET_STATUS and not command.data:
            self.verified = False
            return status(StatusWord.SUCCESS)
        if command.p1 != 0x00:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.p2 != PIN_REFERENCE:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        if not command.data:
            if self._state.blocked:
                return status(StatusWord.AUTHENTICATION_METHOD_BLOCKED)
            if self.verified:
                return status(StatusWord.SUCCESS)
            return status(verification_failed(self._state.tries_remaining))
        candidate = self._candidate(command.data)
        if candidate is None:
            return status(StatusWord.INCORRECT_DATA)
        return self._check(candidate)

    def change(self, command: CommandAPDU, salt: bytes) -> Response:
        """CHANGE REFERENCE DATA: ``00 24 00 00 10 <old PIN‖FF…> <new PIN‖FF…>``.

        Both PINs are padded to 8 bytes, as OpenSC sends them. ``salt`` salts the new reference.
        """
        if command.p1 != 0x00:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.p2 != PIN_REFERENCE:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        if len(command.data) != 2 * MAX_PIN_LENGTH:
            return status(StatusWord.INCORRECT_DATA)
        old = self._candidate(command.data[:MAX_PIN_LENGTH])
        new = self._candidate(command.data[MAX_PIN_LENGTH:])
        if old is None or new is None:
            return status(StatusWord.INCORRECT_DATA)
        try:
            check_pin(new)
        except PinFormatError:
            return status(StatusWord.INCORRECT_DATA)
        answer = self._check(old)
        if answer.sw != StatusWord.SUCCESS:
            return answer
        reference = PinReference.create(new, iterations=self._state.reference.iterations, salt=salt)
        if not self._commit(replace(self._state, reference=reference)):
            return status(StatusWord.MEMORY_FAILURE)
        return answer

    def _candidate(self, data: bytes) -> bytes | None:
        """The PIN inside VERIFY data, or None when no PIN can be that long or short."""
        if len(data) > MAX_PIN_LENGTH:
            return None
        pin = _unpad(data)
        return pin if MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH else None

    def _check(self, candidate: bytes) -> Response:
        state = self._state
        if state.blocked:
            return status(StatusWord.AUTHENTICATION_METHOD_BLOCKED)
        self.verified = False
        spent = replace(state, tries_remaining=state.tries_remaining - 1)
        if not self._commit(spent):
            return status(StatusWord.MEMORY_FAILURE)
        if not state.reference.matches(candidate):
            log.info("cacard.pin_wrong", tries_remaining=spent.tries_remaining)
            return status(verification_failed(spent.tries_remaining))
        if not self._commit(replace(state, tries_remaining=state.max_tries)):
            return status(StatusWord.MEMORY_FAILURE)
        self.verified = True
        return status(StatusWord.SUCCESS)

    def _commit(self, state: PinState) -> bool:
        """Adopt ``state`` and hand it to the sink; False if the sink refused it.

        A refused state is still adopted when it spends a try, so a host cannot win free
        attempts by making persistence fail; a refused refill or new PIN is dropped.
        """
        previous, self._state = self._state, state
        if self._on_change is None:
            return True
        try:
            self._on_change(state)
        except Exception as error:
            log.error("cacard.pin_persist_failed", error=repr(error))
            if state.tries_remaining >= previous.tries_remaining:
                self._state = previous
            return False
        return True
