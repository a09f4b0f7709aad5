"""ccid.usb's values copy and pickle as equal values on both builds (the compiled build's
native frozen classes go through their constructors: cardfloor.frozen.copy_by_constructor)."""

from __future__ import annotations

import copy
import pickle

import pytest

from ccid.device import CCIDDevice
from ccid.usb import DeviceSummary, InterfaceSummary, SetupPacket, Speed

VALUES = [
    SetupPacket(0x80, 6, 0x0100, 0, 18),
    InterfaceSummary(0x0B, 0, 0),
    DeviceSummary(0x08E6, 0x4433, 0x0100, 0, 0, 0, 1, 1, Speed.FULL, (InterfaceSummary(11, 0, 0),)),
]


@pytest.mark.parametrize("value", [*VALUES, CCIDDevice().summary], ids=repr)
def test_a_value_copies_and_pickles_to_an_equal_one(value: object) -> None:
    assert copy.copy(value) == value
    assert copy.deepcopy(value) == value
    assert pickle.loads(pickle.dumps(value)) == value


def test_setup_size_is_a_class_attribute_not_a_field() -> None:
    assert SetupPacket.SIZE == 8
    assert SetupPacket.from_bytes(SetupPacket(1, 2, 3, 4, 5).to_bytes()) == SetupPacket(
        1, 2, 3, 4, 5
    )
    with pytest.raises(ValueError, match="8 bytes"):
        SetupPacket.from_bytes(bytes(7))
