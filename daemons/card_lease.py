"""When vscclient holds a shared PC/SC card for its guest, and when it lets go: sans-IO.

A guest's smart-card stack (OpenSC, a minidriver) sends one operation as several APDUs (SELECT,
then READ BINARY; VERIFY, then a signature) and assumes nothing comes between them: its own
PC/SC transaction lives in the guest and is invisible through CCID. So the client holds a
PC/SC transaction (``SCardBeginTransaction``) for the guest from its first APDU and keeps it
while the guest keeps the card busy, ending it after ``hold`` seconds without an APDU; host
applications get the card between the guest's operations, never inside one.

Security state must not cross a handover, and pcsc-lite cannot say whether another application
used the card between two of our transactions (a reset by another handle shows as
``SCARD_W_RESET_CARD``, but APDUs sent by one do not show at all). Clearing the verified state
by tracking it would need every PIN reference of every applet, and the state a host application
left is unknown; so the card is reset instead: when the guest lets it go
(``SCardEndTransaction(SCARD_RESET_CARD)``: the host never inherits the guest's PIN) and when it
takes it again (``SCardReconnect(SCARD_RESET_CARD)`` inside the new transaction: the guest never
inherits a host application's). pcsc-lite's reader event counter does not move on a reset
nor on another application's APDUs, and our own reset at release makes our next
``SCardBeginTransaction`` report ``SCARD_W_RESET_CARD`` whether or not anyone used the card
since, so every re-acquired transaction is reset. A guest's OpenSC then finds its applet
deselected and its PIN unverified at its next operation, as after any reset: each OpenSC
process selects the applet first, and its PIN cache verifies again on 6982 (OpenSC,
pkcs15-sec.c, use_key).

:class:`CardLease` is the policy: events with the time in, actions out. The PC/SC card
(:mod:`daemons.pcsc_readers`) runs the calls and feeds the results back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

#: Idle time (seconds) after the guest's last APDU before the card goes back to the host.
#: Measured with OpenSC 0.23 in a Linux guest under QEMU TCG (through QEMU's usb-ccid and
#: through our ccid-passthru, its CAC and its PIV driver): inside one operation the guest's
#: APDUs are at most 55 to 106 ms apart (median 3 to 4 ms, p95 9 to 16 ms); the longer gaps,
#: 180 to 800 ms, all come before the SELECT that starts a new OpenSC session. 500 ms is
#: nearly five times the longest gap inside an operation, and what a host application waits at
#: most once the guest goes quiet; a guest that keeps working keeps the card.
DEFAULT_HOLD = 0.5
#: How long (seconds) a guest's APDU waits for a host application's transaction to end:
#: under the 3 s a guest's libccid waits for a reader's answer (CCID, src/defs.h,
#: DEFAULT_COM_READ_TIMEOUT), so the guest hears 6F00 rather than losing its reader; above
#: the 1.1 to 1.6 s the guest waited at most while a host process signed in a loop.
DEFAULT_WAIT = 2.0


class LeaseState(enum.Enum):
    FREE = "free"
    """No transaction of ours, none being asked for."""
    WAITING = "waiting"
    """``SCardBeginTransaction`` is running and a guest APDU waits for it."""
    ABANDONED = "abandoned"
    """``SCardBeginTransaction`` is still running, but the APDU that asked gave up."""
    HELD = "held"
    """Our transaction: the guest's APDUs go to the card."""


class Action(enum.Enum):
    """What the card must do next."""

    BEGIN = "begin"
    """Start ``SCardBeginTransaction`` (it blocks: run it in the card's thread)."""
    AWAIT = "await"
    """Keep waiting for the ``SCardBeginTransaction`` already running."""
    TRANSMIT = "transmit"
    """Send the APDU: the transaction is ours."""
    RESET_AND_TRANSMIT = "reset-and-transmit"
    """Reset the card (new transaction after the card was free), then send the APDU."""
    FAIL = "fail"
    """Answer the guest with an error: the card did not come in time."""
    END = "end"
    """``SCardEndTransaction`` (with a reset unless the state is kept)."""
    NOTHING = "nothing"


class LeaseError(Exception):
    """An event that cannot happen in the lease's state (a bug in the caller)."""


@dataclass(frozen=True)
class LeasePolicy:
    hold: float = DEFAULT_HOLD
    """Seconds without a guest APDU before the transaction ends."""
    wait: float = DEFAULT_WAIT
    """Seconds a guest APDU waits for the card before it fails."""
    reset: bool = True
    """Reset the card on each handover (False: ``--pcsc-keep-state``)."""

    def __post_init__(self) -> None:
        if not 0 <= self.hold <= 3600:
            raise ValueError(f"hold {self.hold} s: expected 0 to 3600 seconds")
        if not 0 < self.wait <= 3600:
            raise ValueError(f"wait {self.wait} s: expected more than 0, at most 3600 seconds")


class CardLease:
    """The guest's hold on a shared card. One guest APDU at a time (the caller serialises).

    Events: :meth:`apdu` (a guest APDU arrives), :meth:`acquired` (``SCardBeginTransaction``
    returned), :meth:`gave_up` (the waiting APDU's bound passed), :meth:`answered` (the APDU's
    response came back), :meth:`tick` (time passed). Each returns the :class:`Action` to run.
    """

    def __init__(self, policy: LeasePolicy | None = None) -> None:
        self.policy = policy if policy is not None else LeasePolicy()
        self.state = LeaseState.FREE
        self.deadline: float | None = None
        """While WAITING: when the waiting APDU gives up."""
        self._busy = False
        self._last = 0.0
        self._fresh = False
        """The transaction just began: the first APDU resets the card first."""
        self._reset_requested = False

    @property
    def busy(self) -> bool:
        """Whether a guest APDU is at the card (or waiting for it)."""
        return self._busy

    def apdu(self, now: float) -> Action:
        """A guest APDU arrives."""
        if self._busy:
            raise LeaseError("a guest APDU arrived while another was in progress")
        self._busy = True
        match self.state:
            case LeaseState.HELD:
                return self._transmit()
            case LeaseState.FREE:
                self.state, self.deadline = LeaseState.WAITING, now + self.policy.wait
                return Action.BEGIN
            case LeaseState.ABANDONED:
                # The earlier request is still blocked in pcsc-lite: this APDU waits for it.
                self.state, self.deadline = LeaseState.WAITING, now + self.policy.wait
                return Action.AWAIT
            case LeaseState.WAITING:
                raise LeaseError("a guest APDU arrived while another was waiting")

    def acquired(self, now: float) -> Action:
        """``SCardBeginTransaction`` returned with the transaction."""
        match self.state:
            case LeaseState.WAITING:
                self.state, self._fresh = LeaseState.HELD, True
                self.deadline = None
                return Action.NOTHING  # the waiting APDU goes on with :meth:`proceed`
            case LeaseState.ABANDONED:
                # Nobody wants it any more: a late lock is given back, never kept.
                self.state = LeaseState.FREE
                return Action.END
            case _:
                raise LeaseError(f"a transaction arrived in state {self.state.value}")

    def proceed(self) -> Action:
        """The waiting APDU saw the transaction arrive: what to send."""
        if self.state is not LeaseState.HELD or not self._busy:
            raise LeaseError(f"proceed in state {self.state.value}")
        return self._transmit()

    def gave_up(self, now: float) -> Action:
        """The waiting APDU's bound passed without the transaction: fail it."""
        if self.state is not LeaseState.WAITING:
            raise LeaseError(f"gave up in state {self.state.value}")
        self.state, self.deadline, self._busy = LeaseState.ABANDONED, None, False
        return Action.FAIL

    def answered(self, now: float) -> None:
        """The card answered the guest's APDU (or the transmission failed)."""
        if not self._busy:
            raise LeaseError("an answer without an APDU")
        self._busy, self._last = False, now

    def lost(self) -> None:
        """The transaction is gone (the card was removed, or a PC/SC call failed)."""
        self.state, self.deadline, self._busy, self._fresh = LeaseState.FREE, None, False, False

    def reset_requested(self) -> bool:
        """The guest reset the card while it was free: the next transaction starts with a
        reset even when the state is kept. True: reset now, the transaction is ours."""
        if self.state is LeaseState.HELD:
            return True
        self._reset_requested = True
        return False

    def tick(self, now: float) -> Action:
        """Time passed: END once the guest has been idle for ``hold``."""
        if (
            self.state is LeaseState.HELD
            and not self._busy
            and now >= self._last + self.policy.hold
        ):
            self.state = LeaseState.FREE
            return Action.END
        return Action.NOTHING

    def wake_at(self) -> float | None:
        """When :meth:`tick` may next have something to do (None: nothing pending)."""
        if self.state is LeaseState.HELD and not self._busy:
            return self._last + self.policy.hold
        return None

    def _transmit(self) -> Action:
        if self._fresh:
            self._fresh = False
            if self.policy.reset or self._reset_requested:
                self._reset_requested = False
                return Action.RESET_AND_TRANSMIT
        return Action.TRANSMIT
