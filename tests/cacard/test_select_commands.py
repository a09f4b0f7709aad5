"""Only a SELECT by AID changes the applet a channel has selected on this card; the SELECT forms
and MANAGE CHANNEL as :mod:`cacard.select_commands` reads them for the card and the allow list."""

from __future__ import annotations

import pytest

from cacard.applets.ccc import CCC_AID
from cacard.card import CHANNELS
from cacard.select_commands import (
    SelectForm,
    opens_channel,
    select_form,
    stays_in_current_application,
)
from cardfloor.iso7816.apdu import CommandAPDU

from .cards import hexsw, make_card, send

PKI0_AID = "A0 00 00 00 79 01 00"


@pytest.mark.parametrize("p1", [p1 for p1 in range(0x100) if p1 != SelectForm.DF_NAME])
def test_only_a_select_by_aid_changes_the_selected_applet(p1: int) -> None:
    card = make_card()
    for channel in range(CHANNELS):
        send(card, f"0{channel} A4 04 00 07 {PKI0_AID}")
    before = [card.selected(channel) for channel in range(CHANNELS)]
    for channel in range(CHANNELS):
        for data in ("", "02 3F 00", "02 DB 00", "07 " + CCC_AID.hex()):
            answer = send(card, f"0{channel} A4 {p1:02X} 00 {data}")
            assert hexsw(answer) != "9000" or p1 == SelectForm.EF_UNDER_CURRENT_DF
    assert [card.selected(channel) for channel in range(CHANNELS)] == before


def test_select_forms_are_named_as_iso_7816_4_names_them() -> None:
    def form(p1: int) -> SelectForm | None:
        return select_form(CommandAPDU(0x00, 0xA4, p1, 0x00))

    assert [form(p1) for p1 in (0, 1, 2, 3, 4, 8, 9)] == list(SelectForm)
    assert [form(p1) for p1 in (5, 6, 7, 0x0A, 0x80, 0xFF)] == [None] * 6
    staying = [
        p1 for p1 in range(0x100) if stays_in_current_application(CommandAPDU(0, 0xA4, p1, 0))
    ]
    assert staying == [SelectForm.EF_UNDER_CURRENT_DF]


def test_every_manage_channel_but_a_close_may_open_one() -> None:
    opening = [p1 for p1 in range(0x100) if opens_channel(CommandAPDU(0x00, 0x70, p1, 0x01))]
    assert opening == [p1 for p1 in range(0x100) if p1 != 0x80]
    card = make_card()
    assert hexsw(send(card, "00 70 00 00 01")) == "6900"  # this card has its four channels open
