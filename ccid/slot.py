"""The reader's one slot: is a card there, is it powered, with which ATR and parameters.

The states and what moves between them, as a table::

    state      insert     remove   power on        power off   USB reset
    absent     inactive   absent   absent (fails)  absent      absent
    inactive   inactive*  absent   active          inactive    inactive
    active     inactive*  absent   active          inactive    inactive

(inactive and active are present-inactive and present-active.)

``*`` a new card replaced the old one. A power-on of an active card is a warm reset. Every
insert and every remove of a present card is a change the host hears of (NotifySlotChange);
power changes are the host's own doing and are not notified.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from cardfloor.iso7816.atr import AnswerToReset

from .constants import ICCStatus
from .parameters import ProtocolParameters


class SlotState(enum.Enum):
    """Where the slot stands, as bmICCStatus reports it."""

    ABSENT = "absent"
    PRESENT_INACTIVE = "present-inactive"
    PRESENT_ACTIVE = "present-active"

    @property
    def icc_status(self) -> ICCStatus:
        """bmICCStatus for this state."""
        return _ICC_STATUS[self]


class SlotEvent(enum.Enum):
    """What can happen to a slot."""

    INSERT = "insert"
    REMOVE = "remove"
    POWER_ON = "power-on"
    POWER_OFF = "power-off"
    USB_RESET = "usb-reset"


_ICC_STATUS: Final = {
    SlotState.ABSENT: ICCStatus.NOT_PRESENT,
    SlotState.PRESENT_INACTIVE: ICCStatus.PRESENT_INACTIVE,
    SlotState.PRESENT_ACTIVE: ICCStatus.PRESENT_ACTIVE,
}

_A, _I, _P = SlotState.ABSENT, SlotState.PRESENT_INACTIVE, SlotState.PRESENT_ACTIVE

TRANSITIONS: Final[Mapping[tuple[SlotState, SlotEvent], SlotState]] = MappingProxyType(
    {
        (_A, SlotEvent.INSERT): _I,
        (_A, SlotEvent.REMOVE): _A,
        (_A, SlotEvent.POWER_ON): _A,
        (_A, SlotEvent.POWER_OFF): _A,
        (_A, SlotEvent.USB_RESET): _A,
        (_I, SlotEvent.INSERT): _I,
        (_I, SlotEvent.REMOVE): _A,
        (_I, SlotEvent.POWER_ON): _P,
        (_I, SlotEvent.POWER_OFF): _I,
        (_I, SlotEvent.USB_RESET): _I,
        (_P, SlotEvent.INSERT): _I,
        (_P, SlotEvent.REMOVE): _A,
        (_P, SlotEvent.POWER_ON): _P,
        (_P, SlotEvent.POWER_OFF): _I,
        (_P, SlotEvent.USB_RESET): _I,
    }
)
"""Every (state, event) pair and the state it leads to."""


class Slot:
    """Slot 0 of the reader."""

    __slots__ = ("_atr", "_state", "parameters")

    def __init__(self) -> None:
        self._state = SlotState.ABSENT
        self._atr: AnswerToReset | None = None
        self.parameters: ProtocolParameters | None = None
        """The protocol parameters in force while a card is present."""

    @property
    def state(self) -> SlotState:
        """Absent, present-inactive or present-active."""
        return self._state

    @property
    def atr(self) -> AnswerToReset | None:
        """The present card's ATR."""
        return self._atr

    @property
    def icc_status(self) -> ICCStatus:
        """bmICCStatus of the slot now."""
        return self._state.icc_status

    def apply(self, event: SlotEvent, atr: AnswerToReset | None = None) -> SlotState:
        """Move along :data:`TRANSITIONS`; return the state left behind.

        INSERT needs the new card's ``atr``; it resets the parameters to the ATR's.
        """
        previous = self._state
        self._state = TRANSITIONS[previous, event]
        if event is SlotEvent.INSERT:
            if atr is None:
                raise ValueError("INSERT needs the card's ATR")
            self._atr = atr
            self.reset_parameters()
        elif self._state is SlotState.ABSENT:
            self._atr = None
            self.parameters = None
        return previous

    def reset_parameters(self) -> None:
        """Back to the parameters the ATR implies (ResetParameters, a new card)."""
        self.parameters = None if self._atr is None else ProtocolParameters.from_atr(self._atr)
