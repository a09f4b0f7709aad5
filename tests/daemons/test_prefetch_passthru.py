"""GET RESPONSE prefetch through the real daemons (issue #17): ``vscclient --card`` reads a
``61xx`` answer's rest from its card at once and ccid-passthru answers the importer's GET
RESPONSEs from it, so a certificate read is one VSCard round trip; the importer sees the same
bytes as from the card itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cacard.atr import CAC_ATR, CAC_ATR_T1

from ..interop.our_vscclient import running_vscclient
from .passthru_process import PassthruProcess, running_passthru
from .piv_session import card_key_9a, key_9a
from .test_reset_passthru import imported, make_card

#: An instruction the card does not know: its command line in the log marks the end of a step.
MARKER = bytes.fromhex("00EE000000")


async def round_trips_until_marker(passthru: PassthruProcess) -> list[dict[str, Any]]:
    """The APDUs ccid-passthru sent over VSCard before MARKER (from its debug log)."""
    commands: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while True:
            event = await passthru.log_event("vscard.apdu")
            if "command" not in event:
                continue
            if MARKER.hex().upper() in str(event["command"]).replace(" ", "").upper():
                return commands
            commands.append(event)


@pytest.mark.parametrize("atr", [CAC_ATR_T1, CAC_ATR], ids=["T=1", "T=0"])
async def test_certificate_read_is_one_round_trip(tmp_path: Path, atr: bytes) -> None:
    card = make_card(tmp_path / "card", atr)
    sent: list[bytes] = []
    async with (
        running_passthru(["-d"], capture_log=True) as passthru,
        running_vscclient(["--card", str(card), "127.0.0.1", str(passthru.vscard_port)]),
        imported(passthru) as importer,
    ):

        async def transmit(apdu: bytes) -> bytes:
            sent.append(apdu)
            return await importer.transmit(apdu)

        assert await importer.power_on() == atr
        key = await card_key_9a(transmit)
        assert key.public_numbers() == key_9a(card).public_numbers()
        assert await importer.transmit(MARKER) == b"\x6d\x00"
        round_trips = await round_trips_until_marker(passthru)
    get_responses = [apdu for apdu in sent if apdu[1] == 0xC0]
    assert len(get_responses) >= 2  # the certificate takes several
    # SELECT and GET DATA; under T=0 SELECT's FCI is one GET RESPONSE more, read ahead too.
    assert len(round_trips) == 2
