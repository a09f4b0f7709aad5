"""The vpcd bridge: the protocol without I/O, then the asyncio adapter against a fake vpcd."""

from __future__ import annotations

import asyncio
import socket

import pytest

import cacard.vpcd
from cacard.card import CAC_ATR
from cacard.vpcd import VpcdConnection, VpcdControl, frame, serve_vpcd
from tests.logs import capture_logs

from .cards import PIN_HEX, make_card

SELECT_CCC = bytes.fromhex("00 A4 04 0C 07 A0 00 00 01 16 DB 00")


def control(code: VpcdControl) -> bytes:
    return frame(bytes((code,)))


def test_get_atr_is_answered_with_the_atr() -> None:
    connection = VpcdConnection(make_card())
    assert connection.receive_data(control(VpcdControl.GET_ATR)) == frame(CAC_ATR)


def test_an_apdu_is_answered_with_the_response() -> None:
    connection = VpcdConnection(make_card())
    assert connection.receive_data(frame(SELECT_CCC)) == frame(b"\x90\x00")


def test_messages_may_arrive_split_anywhere_and_several_at_once() -> None:
    connection = VpcdConnection(make_card())
    wire = frame(SELECT_CCC) + control(VpcdControl.GET_ATR) + frame(SELECT_CCC)
    replies = b"".join(connection.receive_data(wire[i : i + 1]) for i in range(len(wire)))
    assert replies == frame(b"\x90\x00") + frame(CAC_ATR) + frame(b"\x90\x00")


@pytest.mark.parametrize("code", [VpcdControl.POWER_OFF, VpcdControl.RESET, VpcdControl.POWER_ON])
def test_power_controls_get_no_reply_and_log_the_card_out(code: VpcdControl) -> None:
    card = make_card()
    card.transmit(bytes.fromhex("00 20 00 00 08" + PIN_HEX))
    verified = [card.pin_verified]
    assert VpcdConnection(card).receive_data(control(code)) == b""
    verified.append(card.pin_verified)
    assert verified == [True, False]
    assert card.powered is (code is not VpcdControl.POWER_OFF)


def test_unknown_controls_and_empty_messages_are_ignored() -> None:
    connection = VpcdConnection(make_card())
    with capture_logs() as logs:
        assert connection.receive_data(frame(b"\x03") + frame(b"")) == b""
    assert [entry["event"] for entry in logs] == ["vpcd.unknown_control"]


async def test_the_bridge_serves_a_fake_vpcd_and_re_arms_quickack_on_every_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    arms: list[int] = []
    original = cacard.vpcd._quickack

    def counting(sock: socket.socket | None) -> None:
        arms.append(1)
        original(sock)

    monkeypatch.setattr(cacard.vpcd, "_quickack", counting)
    card = make_card()
    answers: asyncio.Queue[bytes] = asyncio.Queue()

    async def fake_vpcd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # vpcd writes the length and the payload separately, as here.
        for message in (control(VpcdControl.POWER_ON), control(VpcdControl.GET_ATR)):
            writer.write(message[:2])
            await writer.drain()
            writer.write(message[2:])
            await writer.drain()
        answers.put_nowait(await reader.readexactly(2 + len(CAC_ATR)))
        writer.write(frame(SELECT_CCC))
        answers.put_nowait(await reader.readexactly(4))
        writer.close()

    server = await asyncio.start_server(fake_vpcd, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, asyncio.timeout(10):
        await serve_vpcd(card, "127.0.0.1", port)
    assert answers.get_nowait() == frame(CAC_ATR)
    assert answers.get_nowait() == frame(b"\x90\x00")
    assert len(arms) >= 3  # once at connect, then after each read
    assert not card.powered  # vpcd went away: the card lost power


async def test_the_bridge_raises_when_vpcd_is_not_there() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError, match="onnect"):
        await serve_vpcd(make_card(), "127.0.0.1", port)


def test_frames_hold_at_most_65535_bytes() -> None:
    assert frame(b"ab") == b"\x00\x02ab"
    with pytest.raises(ValueError, match="65535"):
        frame(bytes(65536))
