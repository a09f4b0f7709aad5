"""The slot's state table is complete and moves as the reader's docstring says."""

from __future__ import annotations

import itertools

from cardfloor.iso7816.atr import parse_atr
from ccid.card import TEST_ATR
from ccid.constants import ICCStatus
from ccid.slot import TRANSITIONS, Slot, SlotEvent, SlotState


def test_every_state_has_a_transition_for_every_event() -> None:
    assert set(TRANSITIONS) == set(itertools.product(SlotState, SlotEvent))


def test_states_report_their_icc_status() -> None:
    assert SlotState.ABSENT.icc_status is ICCStatus.NOT_PRESENT
    assert SlotState.PRESENT_INACTIVE.icc_status is ICCStatus.PRESENT_INACTIVE
    assert SlotState.PRESENT_ACTIVE.icc_status is ICCStatus.PRESENT_ACTIVE


def test_a_card_goes_in_inactive_is_powered_and_leaves() -> None:
    slot = Slot()
    assert slot.apply(SlotEvent.INSERT, parse_atr(TEST_ATR)) is SlotState.ABSENT
    assert slot.apply(SlotEvent.POWER_ON) is SlotState.PRESENT_INACTIVE
    assert slot.apply(SlotEvent.USB_RESET) is SlotState.PRESENT_ACTIVE
    assert slot.apply(SlotEvent.REMOVE) is SlotState.PRESENT_INACTIVE
    assert (slot.state, slot.atr, slot.parameters) == (SlotState.ABSENT, None, None)


def test_power_on_of_an_empty_slot_leaves_it_empty() -> None:
    slot = Slot()
    slot.apply(SlotEvent.POWER_ON)
    assert slot.state is SlotState.ABSENT
