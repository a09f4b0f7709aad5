"""Wire values copy and pickle alike on both builds (cardfloor.frozen.copy_by_constructor).

The compiled build's native classes cannot restore a frozen field the way Python's dataclasses
do; the values a user keeps (decoded messages, parsed APDUs, protocol parameters) must still go
through pickle (a multiprocessing queue, say), copy and deepcopy, whichever build runs.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

import vscard
from cardfloor.frozen import copy_by_constructor
from cardfloor.iso7816.apdu import CommandAPDU, Response
from cardfloor.iso7816.atr import parse_atr
from ccid.parameters import ProtocolParameters
from ccid.usbip import CmdSubmit, CmdUnlink, Direction, RetSubmit, RetUnlink, encode_usbip
from ccid.usbip.codec import RequestDecoder


def _decoded_submit() -> object:
    decoder = RequestDecoder()
    decoder.start_urb_phase()
    decoder.feed(encode_usbip(CmdSubmit(9, 0x10002, Direction.OUT, 2, 0, 3, data=b"abc")))
    return decoder.next_request()


VALUES = [
    *vscard.Decoder().feed(
        vscard.encode(vscard.Init(capabilities=(0xC0000000,)))
        + vscard.encode(vscard.ReaderAdd(0, "Virtual Reader"))
        + vscard.encode(vscard.APDU(3, bytes.fromhex("00A4040000")))  # the decoder's fast path
        + vscard.encode(vscard.ResponseChain(3, b"\x01\x02", 0x6104))
        + vscard.encode(
            vscard.ReadAhead(3, bytes.fromhex("00520000020102"), b"\x61\x02", b"\x0a\x00", 0x9000)
        )
    ),
    vscard.Error(1, vscard.ErrorCode.GENERAL_ERROR),
    vscard.ATR(0, bytes.fromhex("3B00")),
    vscard.Flush(2),
    _decoded_submit(),
    CmdSubmit(1, 0x10001, Direction.IN, 1, 0, 65536),
    CmdUnlink(2, 0x10001, 1),
    RetSubmit(1, status=0, actual_length=2, data=b"\x90\x00"),
    RetUnlink(3, status=-104),
    CommandAPDU.from_bytes(bytes.fromhex("00A4040007A000000079010000")),
    Response(0x9000, b"\x01"),
    ProtocolParameters.from_atr(parse_atr(bytes.fromhex("3B00"))),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda value: type(value).__name__)
def test_values_survive_pickle_copy_and_deepcopy_equal_and_frozen(value: object) -> None:
    for twin in (
        pickle.loads(pickle.dumps(value)),
        copy.copy(value),
        copy.deepcopy(value),
    ):
        assert type(twin) is type(value)
        assert twin == value
        assert hash(twin) == hash(value)
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(twin, dataclasses.fields(twin)[0].name, 0)  # type: ignore[arg-type]


def test_a_copy_is_checked_like_any_new_value() -> None:
    @dataclasses.dataclass(frozen=True)
    class Small:
        value: int

        def __post_init__(self) -> None:
            if self.value < 0:
                raise ValueError(f"value must be >= 0, got {self.value}")

    copy_by_constructor(Small)
    forged = Small(1)
    object.__setattr__(forged, "value", -1)
    with pytest.raises(ValueError, match="value must be >= 0, got -1"):
        copy.copy(forged)
