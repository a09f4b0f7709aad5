"""Which commands spend a PIN or PUK try, on which counter, and how to ask a card for it.

One place knows this, for every encoding a card accepts: short or extended lengths (read by
:meth:`CommandAPDU.from_bytes`, the card's own parser), any class byte (interindustry with any
channel, chained, proprietary such as ``80`` or ``90``) and the odd instructions of ISO/IEC
7816-4 §11.5.6-§11.5.10:

- VERIFY (``20``/``21``) with data compares it with the reference data ``P2`` names;
- CHANGE REFERENCE DATA (``24``/``25``) compares the current data of ``P2`` first (P1=00);
- RESET RETRY COUNTER (``2C``/``2D``) with P1=00/01 compares a resetting code (a PUK), whose
  counter is not the one of ``P2``: for PIV, P2=80 is the PIN and the PUK is reference 81
  (NIST SP 800-73-4 part 2 §3.2.3). P1=02/03 carry no resetting code and spend nothing.

PIV (NIST SP 800-73-4 part 2 §3.2.1-§3.2.3) is covered by the same rules, reference by
reference:

- VERIFY ``80`` (the PIV application PIN) and ``00`` (the global PIN) spend a try of their own
  reference, probed with VERIFY of that reference without data (``63Cx``). On a profile card
  (:mod:`cacard.profile`) the two are one counter (the card's PIN is the application PIN): each
  command is probed with its own reference, which reports that one counter either way.
- CHANGE REFERENCE DATA ``80`` spends a PIN try; ``81`` spends a PUK try, as the reference it
  names, probed with VERIFY ``81``. PIV defines no VERIFY of the PUK: a card answering that
  probe ``6A88`` (referenced data not found) leaves the PUK's count unknown; one that reports
  ``63Cx`` there has it used like any other.
- RESET RETRY COUNTER ``80`` (PUK ‖ new PIN) spends a try of the PIN's resetting code, the PUK,
  whose counter no command can ask for (:attr:`Counter.probe` is None).

A counter that cannot be asked for is never spent through the PIN guard: the guard never
learns its count, and refuses an attempt on a counter whose count it does not know. With the
guard on, a host cannot change a PIV PUK or unblock the PIN with it; the card's owner does that
without the guard.

VERIFY without data spends nothing: it asks for the counter (``63Cx``, ``6983``, ``9000`` when
already verified), and VERIFY P1=FF without data resets the security status. A chunk of a
chained command (CLA bit ``10`` of an interindustry class) counts as an attempt: a card that
ignores chaining takes it as a whole command.

ENVELOPE (``C2``/``C3``, ISO/IEC 7816-4:2013 §11.7.2) carries a command APDU, or a part of one,
in its data; a card that supports it (and the T=0 transport of extended lengths, ISO/IEC 7816-3
§12.2) executes the inner command, so its data may hold a PIN too. This card does not implement
it; the guard judges the inner command
(:data:`~cardfloor.iso7816.instructions.ENVELOPE_INSTRUCTIONS`).

The instructions are :mod:`cardfloor.iso7816.instructions`'s, the parser
:mod:`cardfloor.iso7816.apdu`'s. The card (:mod:`cacard.card`, :mod:`cacard.pin`) dispatches on
those constants; the PIN guard of ``vscclient`` (:mod:`daemons.card_guard`) judges commands with
:func:`pin_attempt`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from cardfloor.iso7816.apdu import CommandAPDU, instruction, plain_class
from cardfloor.iso7816.instructions import (
    INS_RESET_RETRY_COUNTER,
    INS_RESET_RETRY_COUNTER_ODD,
    INS_VERIFY,
    INS_VERIFY_ODD,
    P1_RESET_STATUS,
    PIN_INSTRUCTIONS,
)

_VERIFY: Final = frozenset({INS_VERIFY, INS_VERIFY_ODD})
_RESET_RETRY_COUNTER: Final = frozenset({INS_RESET_RETRY_COUNTER, INS_RESET_RETRY_COUNTER_ODD})
#: RESET RETRY COUNTER P1 values whose data holds no resetting code (new data only, or none).
_RRC_WITHOUT_RESETTING_CODE: Final = frozenset({0x02, 0x03})


class CounterKind(enum.Enum):
    """Which retry counter a comparison spends."""

    #: The reference data ``P2`` names (a PIN, or a PUK addressed as its own reference).
    REFERENCE = "reference"
    #: The resetting code (PUK) of the reference ``P2`` names.
    RESETTING_CODE = "resetting code"


@dataclass(frozen=True, slots=True)
class Counter:
    """A retry counter as a host addresses it: class and channel, kind and reference."""

    cla: int
    kind: CounterKind
    reference: int

    @property
    def probe(self) -> bytes | None:
        """VERIFY without data: the card answers with this counter, or None when no command
        can ask for it (a resetting code has no VERIFY)."""
        if self.kind is not CounterKind.REFERENCE:
            return None
        return bytes((self.cla, INS_VERIFY, 0x00, self.reference))

    @property
    def logout(self) -> bytes | None:
        """VERIFY P1=FF without data: the reference is no longer verified, so that the probe
        reports its counter instead of ``9000``; None for a resetting code."""
        if self.kind is not CounterKind.REFERENCE:
            return None
        return bytes((self.cla, INS_VERIFY, P1_RESET_STATUS, self.reference))


@dataclass(frozen=True, slots=True)
class PinAttempt:
    """A command that may spend one try of ``counter``; ``chained``: more chunks follow."""

    command: CommandAPDU
    counter: Counter
    chained: bool


def pin_attempt(raw: bytes) -> PinAttempt | None:
    """The try ``raw`` may spend, or None when it spends none.

    Raise :class:`~cardfloor.iso7816.apdu.APDUFormatError` when ``raw`` has a PIN instruction
    but lengths the card's parser rejects: a lenient card may still take it as that command,
    so it must not be forwarded unjudged.
    """
    if instruction(raw) not in PIN_INSTRUCTIONS:
        return None
    command = CommandAPDU.from_bytes(raw)
    chained = command.chained
    kind = CounterKind.REFERENCE
    if command.ins in _VERIFY:
        if not command.data and not chained:
            return None  # a status query or P1=FF: compares nothing
    elif command.ins in _RESET_RETRY_COUNTER:
        if command.p1 in _RRC_WITHOUT_RESETTING_CODE:
            return None
        kind = CounterKind.RESETTING_CODE
    return PinAttempt(command, Counter(plain_class(command.cla), kind, command.p2), chained)
