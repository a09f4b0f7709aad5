"""Read-ahead through the real daemons (issue #17, over a WAN): ``vscclient --card`` sends its
card the reads OpenSC's CAC driver asks next and ccid-passthru answers them, so reading a CAC
object costs one VSCard round trip; the importer sees the same bytes as without it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from cacard.atr import CAC_ATR, CAC_ATR_T1
from cardfloor.iso7816.apdu import CommandAPDU

from ..interop.our_vscclient import running_vscclient
from .passthru_process import running_passthru
from .piv_session import SELECT_PIV
from .test_prefetch_passthru import MARKER, round_trips_until_marker
from .test_reset_passthru import imported, make_card

Transmit = Callable[[bytes], Awaitable[bytes]]


async def opensc_object(transmit: Transmit, aid: str, file_id: str, t1: bool) -> list[bytes]:
    """What OpenSC's CAC driver sends to read one object (card-cac.c: ``cac_select_file``,
    ``cac_get_properties``, ``cac_read_binary``), GET RESPONSE after each ``61xx`` as its T=0
    layer does; the answers, in order."""
    answers: list[bytes] = []

    async def send(command: bytes) -> bytes:
        answer = await transmit(command)
        answers.append(answer)
        data = b""
        while answer[-2] == 0x61:
            data += answer[:-2]
            answer = await transmit(bytes((0, 0xC0, 0, 0, answer[-1])))
            answers.append(answer)
        return data + answer

    await send(bytes.fromhex(f"00a4040007{aid}"))
    await send(bytes.fromhex(f"00a4020002{file_id}"))
    properties = await send(bytes.fromhex("00560100ff"))
    if properties[0] == 0x6C:
        await send(bytes.fromhex("00560100") + properties[1:])
    for which in (1, 2):

        async def read(offset: int, count: int, kind: int = which) -> bytes:
            le = count if t1 else None
            body = bytes((kind, count))
            return await send(CommandAPDU(0, 0x52, offset >> 8, offset & 0xFF, body, le).to_bytes())

        head = await read(0, 2)
        size, offset = int.from_bytes(head[:2], "little"), 2
        while offset < 2 + size:
            chunk = await read(offset, min(240, 2 + size - offset))
            assert chunk[-2:] == b"\x90\x00"
            offset += len(chunk) - 2
    return answers


async def opensc_piv_object(transmit: Transmit, tag: str) -> list[bytes]:
    """What OpenSC's PIV driver sends to read one object (card-piv.c): SELECT, GET DATA of 8
    bytes for the object's length, then GET DATA of the whole object (Le = its length, 256 at
    most), and GET RESPONSE after each ``61xx``; the answers, in order."""
    answers: list[bytes] = []

    async def send(command: bytes) -> bytes:
        answer = await transmit(command)
        answers.append(answer)
        data = answer[:-2]
        while answer[-2] == 0x61:
            answer = await transmit(bytes((0, 0xC0, 0, 0, answer[-1])))
            answers.append(answer)
            data += answer[:-2]
        return data + answer[-2:]

    await send(SELECT_PIV)
    body = bytes.fromhex(f"5c03{tag}")
    head = await send(CommandAPDU(0, 0xCB, 0x3F, 0xFF, body, 8).to_bytes())
    whole = await send(CommandAPDU(0, 0xCB, 0x3F, 0xFF, body, min(len(head) - 2, 256)).to_bytes())
    assert whole == head
    return answers


async def _read_object(
    card: Path, atr: bytes, extra: list[str], read: Callable[[Transmit], Awaitable[list[bytes]]]
) -> tuple[list[bytes], int]:
    """The importer's answers to ``read``, and the VSCard round trips it cost."""
    async with (
        running_passthru(["-d"], capture_log=True) as passthru,
        running_vscclient([*extra, "--card", str(card), "127.0.0.1", str(passthru.vscard_port)]),
        imported(passthru) as importer,
    ):
        assert await importer.power_on() == atr
        answers = await read(importer.transmit)
        assert await importer.transmit(MARKER) == b"\x6d\x00"
        round_trips = await round_trips_until_marker(passthru)
    return answers, len(round_trips)


@pytest.mark.parametrize("atr", [CAC_ATR_T1, CAC_ATR], ids=["T=1", "T=0"])
async def test_an_object_read_is_one_round_trip_after_its_selection(
    tmp_path: Path, atr: bytes
) -> None:
    card = make_card(tmp_path / "card", atr)

    async def read(transmit: Transmit) -> list[bytes]:
        return await opensc_object(transmit, "a0000000790100", "0100", atr != CAC_ATR)

    ahead, ahead_trips = await _read_object(card, atr, [], read)
    plain, plain_trips = await _read_object(card, atr, ["--no-read-ahead"], read)
    assert ahead == plain  # the same bytes, answer by answer
    assert len([answer for answer in ahead if answer[-2:] == b"\x90\x00"]) >= 8
    # Two SELECTs, then the properties and every READ BUFFER in one.
    assert ahead_trips == 3
    assert plain_trips >= ahead_trips + 6


@pytest.mark.parametrize("tag", ["5fc105", "5fc102"], ids=["9A certificate", "CHUID"])
async def test_a_piv_object_read_whole_after_its_length_is_one_round_trip(
    tmp_path: Path, tag: str
) -> None:
    card = make_card(tmp_path / "card", CAC_ATR_T1)

    async def read(transmit: Transmit) -> list[bytes]:
        return await opensc_piv_object(transmit, tag)

    ahead, ahead_trips = await _read_object(card, CAC_ATR_T1, [], read)
    plain, plain_trips = await _read_object(card, CAC_ATR_T1, ["--no-read-ahead"], read)
    assert ahead == plain
    assert ahead_trips == 2  # SELECT, then the 8 bytes with the whole object read ahead
    assert plain_trips == 3
