"""vscclient --pcsc shares a real card with the client's own applications (issue 16).

The real card is a ``cacard serve-vpcd`` card (CAC+PIV, RSA-1024 9A) in the private pcscd, so
pcsc-lite's own transactions and resets are what is exercised. The guest is a VSCard test host
driving vscclient (in this process); the "host application" is pyscard on the same pcscd,
holding its own transaction as OpenSC does and leaving the card as it is at the end (OpenSC's
default ``transaction_end_action = leave``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

pytest.importorskip("smartcard", reason="pyscard (the 'pcsc' extra) is not installed")

from smartcard import scard

import vscard
from cacard import CardRequest, generate_card
from cacard.profile import Applications
from daemons.card_lease import CardLease, LeaseState
from daemons.compare_card import CompareCard
from daemons.pcsc_readers import PcscCard
from daemons.vscclient import Daemon, parse_args, plan_from_args
from tests.daemons.piv_session import (
    RSA_ALGORITHMS,
    SELECT_PIV,
    VERIFY_80,
    Transmit,
    exchange,
    key_9a,
    pkcs1_block,
)
from vscard import CardInserted

from . import opensc
from .pcsc import fixtures
from .pcsc.pcscd import Pcscd

pcscd = fixtures.pcscd

pytestmark = pytest.mark.interop

VERIFY_STATUS = bytes.fromhex("00200080")
VERIFIED, NOT_VERIFIED = 0x9000, 0x6982


@pytest.fixture(scope="module")
def piv_card_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("sharing") / "card"
    request = CardRequest(key_size=1024, pin_iterations=1, applications=Applications.CAC_PIV)
    generate_card(directory, request)
    return directory


@pytest.fixture
def real_card(pcscd: Pcscd, piv_card_dir: Path, tmp_path: Path) -> Iterator[str]:
    """The card served in vpcd slot 0; yields its reader's name."""
    process = opensc.serve(pcscd, [str(piv_card_dir)], tmp_path, 0)
    try:
        yield pcscd.reader_name(0)
    finally:
        opensc.stop(pcscd, process, 0)


async def sign_status(transmit: Transmit, card_dir: Path) -> int:
    """GENERAL AUTHENTICATE with 9A (RSA-1024, one APDU); its status, the signature checked."""
    public_key = key_9a(card_dir)
    size = public_key.key_size // 8
    block = pkcs1_block(b"shared card", size)
    template = bytes((0x7C, 0x81, size + 5, 0x82, 0x00, 0x81, 0x81, size)) + block
    apdu = bytes((0x00, 0x87, RSA_ALGORITHMS[public_key.key_size], 0x9A, len(template)))
    data, sw = await exchange(transmit, apdu + template + b"\x00")
    if sw == 0x9000:
        signature = data[-size:]
        numbers = public_key.public_numbers()
        recovered = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n)
        assert recovered.to_bytes(size, "big") == block, "9A signed wrongly"
    return sw


async def select_and_sign(transmit: Transmit, card_dir: Path, *, verify: bool) -> int:
    """SELECT PIV, VERIFY (or not), sign: the sign's status."""
    _, sw = await exchange(transmit, SELECT_PIV)
    assert sw == 0x9000
    if verify:
        _, sw = await exchange(transmit, VERIFY_80)
        assert sw == 0x9000
    return await sign_status(transmit, card_dir)


class HostApplication:
    """A client application on the same pcscd: its own context, handle and transactions."""

    def __init__(self, reader: str) -> None:
        result, self.context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        assert result == scard.SCARD_S_SUCCESS
        result, self.card, protocol = scard.SCardConnect(
            self.context, reader, scard.SCARD_SHARE_SHARED, scard.SCARD_PROTOCOL_T0 | 2
        )
        assert result == scard.SCARD_S_SUCCESS, scard.SCardGetErrorMessage(result)
        self.pci = scard.SCARD_PCI_T0 if protocol == scard.SCARD_PROTOCOL_T0 else scard.SCARD_PCI_T1

    def _call(self, call: str, result: int) -> None:
        if result == scard.SCARD_W_RESET_CARD:  # someone reset the card: acknowledge, go on
            result, _ = scard.SCardReconnect(
                self.card, scard.SCARD_SHARE_SHARED, 3, scard.SCARD_LEAVE_CARD
            )
            raise ResetSeen(call)
        assert result == scard.SCARD_S_SUCCESS, f"{call}: {scard.SCardGetErrorMessage(result)}"

    def begin(self) -> None:
        try:
            self._call("SCardBeginTransaction", scard.SCardBeginTransaction(self.card))
        except ResetSeen:
            self._call("SCardBeginTransaction", scard.SCardBeginTransaction(self.card))

    def end(self) -> None:
        self._call("SCardEndTransaction", scard.SCardEndTransaction(self.card, 0))

    def send(self, apdu: bytes) -> bytes:
        result, response = scard.SCardTransmit(self.card, self.pci, list(apdu))
        self._call("SCardTransmit", result)
        return bytes(response)

    async def transmit(self, apdu: bytes) -> bytes:
        return await asyncio.to_thread(self.send, apdu)

    def close(self) -> None:
        scard.SCardDisconnect(self.card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(self.context)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.begin()
        try:
            yield
        finally:
            self.end()


class ResetSeen(Exception):
    pass


@asynccontextmanager
async def host_application(reader: str) -> AsyncIterator[HostApplication]:
    application = await asyncio.to_thread(HostApplication, reader)
    try:
        yield application
    finally:
        await asyncio.to_thread(application.close)


async def host_signs(application: HostApplication, card_dir: Path, *, verify: bool) -> int:
    """One host operation in its own transaction: SELECT PIV, VERIFY (or not), sign; the
    sign's status. VERIFY without data first tells what the card thinks."""
    await asyncio.to_thread(application.begin)
    try:
        return await select_and_sign(application.transmit, card_dir, verify=verify)
    finally:
        await asyncio.to_thread(application.end)


class Guest:
    """A VSCard host standing for the guest: it sends APDUs to the card vscclient forwards."""

    def __init__(self) -> None:
        self.inserted: asyncio.Future[tuple[vscard.Session, int]] = (
            asyncio.get_running_loop().create_future()
        )

    async def handle(self, session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted) and not self.inserted.done():
                self.inserted.set_result((session, event.reader_id))

    async def transmit(self, apdu: bytes) -> bytes:
        session, reader_id = await asyncio.wait_for(asyncio.shield(self.inserted), 20)
        return await session.transmit(reader_id, apdu)

    async def signs(self, card_dir: Path, *, verify: bool) -> int:
        return await select_and_sign(self.transmit, card_dir, verify=verify)

    async def pin_status(self) -> int:
        _, sw = await exchange(self.transmit, VERIFY_STATUS)
        return sw


@asynccontextmanager
async def vscclient(options: Sequence[str]) -> AsyncIterator[tuple[Guest, Daemon]]:
    """Our vscclient (in this process) with ``options``, serving a guest test host."""
    guest = Guest()
    async with await vscard.serve(guest.handle, "127.0.0.1", 0) as server:
        args = [*options, "127.0.0.1", str(server.port)]
        daemon = Daemon(plan_from_args(parse_args(args)), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        try:
            await asyncio.wait_for(asyncio.shield(guest.inserted), 20)
            yield guest, daemon
        finally:
            daemon.stop()
            assert await asyncio.wait_for(run, 10) == 0


def pcsc_card(daemon: Daemon) -> PcscCard:
    card = daemon.mirror.readers[0].card
    assert isinstance(card, PcscCard)
    return card


def state_of(lease: CardLease) -> LeaseState:
    return lease.state


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Poll ``condition()`` until true (a deadline, not a sleep for synchronisation)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_the_guest_does_not_ride_on_the_host_applications_pin(
    real_card: str, piv_card_dir: Path
) -> None:
    async with vscclient(["--pcsc=" + real_card]) as (guest, _daemon):
        assert await guest.signs(piv_card_dir, verify=True) == 0x9000  # the guest works
        async with host_application(real_card) as application:
            # The host application logs in and signs; it leaves the card as it is.
            assert await host_signs(application, piv_card_dir, verify=True) == 0x9000
            assert await guest.signs(piv_card_dir, verify=False) == NOT_VERIFIED
            assert await guest.pin_status() != VERIFIED


async def test_the_host_application_does_not_ride_on_the_guests_pin(
    real_card: str, piv_card_dir: Path
) -> None:
    async with vscclient(["--pcsc=" + real_card]) as (guest, daemon):
        assert await guest.signs(piv_card_dir, verify=True) == 0x9000
        assert await guest.pin_status() == VERIFIED
        async with host_application(real_card) as application:
            # Its transaction begins once the guest's hold has lapsed.
            assert await host_signs(application, piv_card_dir, verify=False) == NOT_VERIFIED
            with application.transaction():
                _, sw = await exchange(application.transmit, VERIFY_STATUS)
            assert sw != VERIFIED
        assert pcsc_card(daemon).lease is not None


async def test_keep_state_leaves_the_login_for_whoever_comes_next(
    real_card: str, piv_card_dir: Path
) -> None:
    """``--pcsc-keep-state``: what the default reset prevents (the test's control)."""
    async with (
        vscclient(["--pcsc=" + real_card, "--pcsc-keep-state"]) as (guest, _daemon),
        host_application(real_card) as application,
    ):
        assert await host_signs(application, piv_card_dir, verify=True) == 0x9000
        assert await guest.signs(piv_card_dir, verify=False) == 0x9000


async def test_two_guests_on_one_card_each_need_their_own_pin(
    real_card: str, piv_card_dir: Path
) -> None:
    """Two vscclients on the same card: each holds its own transaction."""
    async with (
        vscclient(["--pcsc=" + real_card]) as (first, _),
        vscclient(["--pcsc=" + real_card]) as (second, _),
    ):
        assert await first.signs(piv_card_dir, verify=True) == 0x9000
        assert await second.signs(piv_card_dir, verify=False) == NOT_VERIFIED
        assert await second.signs(piv_card_dir, verify=True) == 0x9000
        assert await first.signs(piv_card_dir, verify=False) == NOT_VERIFIED


async def test_a_guest_apdu_waits_for_a_host_transaction_then_fails_cleanly(
    real_card: str, piv_card_dir: Path
) -> None:
    """A host application that keeps the card: the guest's APDU waits --pcsc-wait, then gets
    6F00; the transaction that comes late is given back, and the next APDU works."""
    async with vscclient(["--pcsc=" + real_card, "--pcsc-wait", "300"]) as (guest, daemon):
        lease = pcsc_card(daemon).lease
        assert lease is not None
        async with host_application(real_card) as application:
            await asyncio.to_thread(application.begin)
            answer = await guest.transmit(SELECT_PIV)
            assert answer == b"\x6f\x00"
            assert lease.state is LeaseState.ABANDONED
            await asyncio.to_thread(application.end)
            # The late transaction is released, never kept: the host application gets the
            # card again (its begin would block forever otherwise).
            await until(lambda: state_of(lease) is LeaseState.FREE)
            done = threading.Event()

            def begin_and_end() -> None:
                application.begin()
                application.end()
                done.set()

            await asyncio.to_thread(begin_and_end)
            assert done.is_set()
        assert await guest.signs(piv_card_dir, verify=True) == 0x9000


async def test_compare_mode_shares_the_real_card_too(
    real_card: str, piv_card_dir: Path, tmp_path: Path
) -> None:
    """``-p``: the real card is held and reset the same way, and the emulated card is reset
    with it, so the two still answer alike after a host application's login."""
    emulated = tmp_path / "emulated"
    request = CardRequest(key_size=1024, pin_iterations=1, applications=Applications.CAC_PIV)
    await asyncio.to_thread(generate_card, emulated, request)
    async with vscclient(["-p", "--card", str(emulated)]) as (guest, daemon):
        compare = daemon.mirror.readers[0].card
        assert isinstance(compare, CompareCard)
        assert isinstance(compare.real, PcscCard)
        _, sw = await exchange(guest.transmit, SELECT_PIV)
        assert sw == 0x9000
        _, sw = await exchange(guest.transmit, VERIFY_80)
        assert sw == 0x9000
        async with host_application(real_card) as application:
            assert await host_signs(application, piv_card_dir, verify=True) == 0x9000
        _, sw = await exchange(guest.transmit, SELECT_PIV)
        assert sw == 0x9000
        assert await guest.pin_status() != VERIFIED
        differences = compare.differences
        assert await guest.pin_status() != VERIFIED
        assert compare.differences == differences  # both unverified: they agree


@pytest.mark.parametrize("keep_state", [False, True], ids=["reset", "keep-state"])
async def test_a_reset_from_the_guest_side_reaches_the_card(
    real_card: str, piv_card_dir: Path, keep_state: bool
) -> None:
    """LocalCard.cold_reset (the guest's reader powered the card off and on) while the guest
    holds the card resets it at once; while the card is free, the next transaction starts
    with a reset, even with --pcsc-keep-state."""
    options = ["--pcsc=" + real_card, *(["--pcsc-keep-state"] if keep_state else [])]
    async with vscclient(options) as (guest, daemon):
        card = pcsc_card(daemon)
        lease = card.lease
        assert lease is not None
        assert await guest.signs(piv_card_dir, verify=True) == 0x9000
        assert state_of(lease) is LeaseState.HELD
        await card.cold_reset()
        assert await guest.pin_status() != VERIFIED
        assert await guest.signs(piv_card_dir, verify=True) == 0x9000
        await until(lambda: state_of(lease) is LeaseState.FREE)
        await card.cold_reset()
        assert await guest.pin_status() != VERIFIED
