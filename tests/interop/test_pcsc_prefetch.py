"""GET RESPONSE prefetch on a shared PC/SC card (issue #17): vscclient reads a ``61xx``
answer's rest inside the guest's hold (the answer and the first prefetch GET RESPONSE meet the
lease in one task step), so the chain is the card's data, read in one VSCard round trip."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from cryptography import x509

import vscard
from cacard.piv.ber import decode_fields, decode_one
from daemons.vscclient import Daemon, parse_args, plan_from_args
from tests.daemons.piv_session import SELECT_PIV
from vscard import CardInserted
from vscard.response_chain import ChainHolder, Continue

from .pcsc import fixtures
from .test_pcsc_sharing import piv_card_dir, real_card

pcscd = fixtures.pcscd
__all__ = ["pcscd", "piv_card_dir", "real_card"]

pytestmark = pytest.mark.interop

GET_CERT_9A = bytes.fromhex("00CB3FFF055C035FC10500")


class ChainingGuest:
    """A VSCard host that takes ResponseChains, as ccid-passthru does."""

    def __init__(self) -> None:
        self.inserted: asyncio.Future[tuple[vscard.Session, int]] = (
            asyncio.get_running_loop().create_future()
        )
        self.holder = ChainHolder()
        self.round_trips = 0

    async def handle(self, session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted) and not self.inserted.done():
                self.inserted.set_result((session, event.reader_id))

    async def transmit(self, apdu: bytes) -> bytes:
        session, reader_id = await asyncio.wait_for(asyncio.shield(self.inserted), 20)
        prefix = b""
        local = self.holder.answer(apdu)
        if isinstance(local, Continue):
            prefix, apdu = local.prefix, local.command
        elif local is not None:
            return local
        self.round_trips += 1
        response = await session.transmit(reader_id, apdu)
        chain = session.take_response_chain(reader_id)
        if chain is not None:
            self.holder.hold(apdu, chain.data, chain.sw)
        return prefix + response


@asynccontextmanager
async def vscclient(options: Sequence[str]) -> AsyncIterator[ChainingGuest]:
    guest = ChainingGuest()
    async with await vscard.serve(guest.handle, "127.0.0.1", 0, response_chain=True) as server:
        args = [*options, "127.0.0.1", str(server.port)]
        daemon = Daemon(plan_from_args(parse_args(args)), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        try:
            await asyncio.wait_for(asyncio.shield(guest.inserted), 20)
            yield guest
        finally:
            daemon.stop()
            assert await asyncio.wait_for(run, 10) == 0


async def read(guest: ChainingGuest, apdu: bytes) -> tuple[bytes, int]:
    answer = await guest.transmit(apdu)
    data, sw = answer[:-2], answer[-2:]
    while sw[0] == 0x61:
        answer = await guest.transmit(bytes((0x00, 0xC0, 0x00, 0x00, sw[1])))
        data, sw = data + answer[:-2], answer[-2:]
    return data, int.from_bytes(sw, "big")


async def test_certificate_is_prefetched_inside_the_hold(
    real_card: str, piv_card_dir: Path
) -> None:
    async with vscclient(["--pcsc=" + real_card]) as guest:
        _, sw = await read(guest, SELECT_PIV)
        assert sw == 0x9000
        before = guest.round_trips
        data, sw = await read(guest, GET_CERT_9A)
        assert sw == 0x9000
        assert guest.round_trips == before + 1
    der = decode_fields(decode_one(data, 0x53), where="certificate object")[0x70]
    expected = x509.load_pem_x509_certificate((piv_card_dir / "cert-1.pem").read_bytes())
    assert x509.load_der_x509_certificate(der) == expected
