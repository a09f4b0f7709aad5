"""What SELECT and MANAGE CHANNEL may do to a card's current application, for the card and the
APDU allow list of ``vscclient`` alike.

SELECT's P1 says how the data name the file (ISO/IEC 7816-4:2005 §7.1.1 Table 39, 2013 §11.2.2);
only some forms can take a host out of the application it selected:

- ``00`` a file identifier: the MF (``3F00`` or no data), or a DF or EF that the card may look
  for among the children of the current DF, its parent and the parent's children: another
  application's DF too;
- ``01`` a child DF of the current DF: any application's DF when the MF is current;
- ``02`` an EF under the current DF. It never leaves the current DF: an ISO file system
  selects the EF there, a Java Card hands the command to the selected applet (Java Card
  Runtime Environment Specification, Classic Edition, §4.5.2: only a SELECT by DF name selects
  an applet), and a CAC applet selects one of its own objects (libcacard, ``cac.c``,
  ``cac_common_process_apdu``; OpenSC, ``card-cac.c``, ``cac_select_file_by_type``);
- ``03`` the parent DF of the current DF;
- ``04`` a DF name: an application by its AID (or by the first bytes of it, per P2's occurrence);
- ``08`` a path from the MF, ``09`` a path from the current DF: any DF the path reaches.

Any other P1 is RFU, so a card gives it whatever meaning it likes.

MANAGE CHANNEL (2005 §7.1.2, 2013 §11.1.2) P1=``00`` opens a logical channel, on which the
card selects an application of its own choosing: the MF, the default applet of a Java Card
(Runtime Environment §4.5.1), or, opened from another channel, that channel's application.
P1=``80`` closes one, selecting nothing. Any other P1 is RFU.

This card (:mod:`cacard.card`) selects applets by DF name only, gives P1=02 to the selected
applet (a CAC applet's SELECT OBJECT) and refuses MANAGE CHANNEL; the allow list refuses every
form that may select an application other than the current one, whichever card is behind it.
"""

from __future__ import annotations

import enum
from typing import Final

from cardfloor.iso7816.apdu import CommandAPDU

#: MANAGE CHANNEL P1: open a logical channel.
P1_OPEN_CHANNEL: Final = 0x00
#: MANAGE CHANNEL P1: close the logical channel P2 names (or the command's own).
P1_CLOSE_CHANNEL: Final = 0x80


class SelectForm(enum.IntEnum):
    """SELECT's P1 (ISO/IEC 7816-4:2005 Table 39), named as the standard names it."""

    FILE_IDENTIFIER = 0x00
    CHILD_DF = 0x01
    EF_UNDER_CURRENT_DF = 0x02
    PARENT_DF = 0x03
    DF_NAME = 0x04
    PATH_FROM_MF = 0x08
    PATH_FROM_CURRENT_DF = 0x09


def select_form(command: CommandAPDU) -> SelectForm | None:
    """How a SELECT ``command`` names its file; None for an RFU P1 (the card's own meaning)."""
    try:
        return SelectForm(command.p1)
    except ValueError:
        return None


def stays_in_current_application(command: CommandAPDU) -> bool:
    """Whether a SELECT ``command`` that is not by DF name selects only within the current
    application, on every card: an EF under the current DF (module docstring)."""
    return command.p1 == SelectForm.EF_UNDER_CURRENT_DF


def opens_channel(command: CommandAPDU) -> bool:
    """Whether a MANAGE CHANNEL ``command`` may open a channel: anything but a close, since an
    RFU P1 is the card's to read."""
    return command.p1 != P1_CLOSE_CHANNEL
