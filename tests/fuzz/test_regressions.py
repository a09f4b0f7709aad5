"""Inputs the long fuzzing runs once failed on, kept so the fix stays."""

from __future__ import annotations

from .usbip_harness import fuzz_one as fuzz_usbip

# Two usbip-win2 port resets with the same seqnum, the second after the first was answered:
# the server rightly answers both (a seqnum is free again once its URB is answered); the
# harness's model of the importer wrongly allowed one answer per seqnum for the whole session.
USBIP_REPEATED_PORT_RESET = bytes.fromhex(
    "000111800300000000312d3100000000000000000000000000000000000000000000000000000000000000000100000001000100020000000000000003000000000000000a0000000000000000000000000000000000000000650000000000010000000000000100000006000100020000000000000000000000000000000000000000ffffffff0000000023030400010000000000000100000006000100020000000000000000000000000000000000000000ffffffff000000002303040001000000"
)


def test_a_seqnum_used_again_after_its_answer_is_fine() -> None:
    fuzz_usbip(USBIP_REPEATED_PORT_RESET)
