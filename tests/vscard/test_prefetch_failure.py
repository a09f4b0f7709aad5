"""GET RESPONSE prefetch when the card fails partway (issue #17): what the client read before
the failure still reaches the host, as a chain cut short, and the guest's later GET RESPONSEs
go to the card for the rest, so the guest gets every byte the card has."""

from __future__ import annotations

import asyncio

import vscard
from cacard.atr import CAC_ATR
from vscard import CardInserted
from vscard.local_answers import LocalAnswers
from vscard.response_chain import Continue

READ = bytes.fromhex("00B0000000")
DATA = bytes(range(256)) * 3  # 768 bytes: three GET RESPONSEs of 256


class FlakyCard:
    """Answers READ with ``61 00`` (T=0) and hands its data out 256 bytes per GET RESPONSE;
    the second GET RESPONSE it is sent fails once (a reader's transient error), before the card
    gives anything away."""

    def __init__(self) -> None:
        self.pending = b""
        self.get_responses = 0

    async def transmit(self, apdu: bytes) -> bytes:
        if apdu[1] != 0xC0:
            self.pending = DATA
            return b"\x61\x00"
        self.get_responses += 1
        if self.get_responses == 2:
            raise OSError("the reader hiccuped")
        count = apdu[4] or 256
        chunk, self.pending = self.pending[:count], self.pending[count:]
        if self.pending:
            return chunk + bytes((0x61, min(len(self.pending), 256) & 0xFF))
        return chunk + b"\x90\x00"


async def test_a_chain_the_card_broke_off_is_kept_and_the_rest_asked_of_the_card() -> None:
    inserted: asyncio.Future[tuple[vscard.Session, int]] = (
        asyncio.get_running_loop().create_future()
    )

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted) and not inserted.done():
                inserted.set_result((session, event.reader_id))

    card = FlakyCard()
    server = await vscard.serve(handle, "127.0.0.1", 0, response_chain=True, read_ahead=True)
    async with server, await vscard.connect("127.0.0.1", server.port) as client:
        reader = await client.add_reader("r", transmit=card.transmit)
        await reader.insert(CAC_ATR)
        session, reader_id = await asyncio.wait_for(inserted, 10)
        local = LocalAnswers()
        round_trips = 0

        async def transmit(apdu: bytes) -> bytes:
            nonlocal round_trips
            prefix = b""
            answer = local.answer(apdu)
            if isinstance(answer, Continue):
                prefix, apdu = answer.prefix, answer.command
            elif answer is not None:
                return answer
            round_trips += 1
            response = await session.transmit(reader_id, apdu)
            chain = session.take_response_chain(reader_id)
            local.took(apdu, chain, session.take_read_ahead(reader_id))
            return prefix + response

        answer = await transmit(READ)
        received = b""
        while answer[-2] == 0x61:
            answer = await transmit(bytes((0, 0xC0, 0, 0, answer[-1])))
            received += answer[:-2]
        assert answer[-2:] == b"\x90\x00"
        assert received == DATA
        # The first 256 bytes came with the READ's answer; the rest needed the card again.
        assert round_trips == 2
