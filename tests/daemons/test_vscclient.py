"""vscclient against a recording VSCard host: the exact messages a host receives."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import vscard
from cacard import CAC_ATR, CardRequest, generate_card
from daemons.vscclient import Daemon, Plan, UsageError, main, parse_args, plan_from_args
from vscard import (
    APDU,
    ATR,
    CardInserted,
    CardRemove,
    HostConnection,
    Init,
    ReaderAdd,
    ReaderRemove,
)

from ..interop.guest.nssdb import make_nssdb

CARD_ATR = bytes.fromhex("3B7A180000736674652063643134 34".replace(" ", ""))


class ToyCard:
    atr = CARD_ATR

    def power_on(self) -> None:
        pass

    async def cold_reset(self) -> None:
        self.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        return apdu[:2] + b"\x90\x00"


@dataclass
class RecordingHost:
    """A VSCard host that answers like ours and records every message it receives."""

    received: list[vscard.Message] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    connections: list[tuple[HostConnection, asyncio.StreamWriter]] = field(default_factory=list)
    garbage_on_connect: bytes | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host = HostConnection()
        self.connections.append((host, writer))
        if self.garbage_on_connect is not None:
            writer.write(self.garbage_on_connect)
            self.garbage_on_connect = None
        decoder = vscard.Decoder()
        while data := await reader.read(65536):
            messages = decoder.feed(data)
            host.receive_data(data)
            writer.write(host.data_to_send())
            async with self.changed:
                self.received += messages
                self.changed.notify_all()
        writer.close()

    async def wait_for(self, predicate: type, count: int = 1) -> None:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(
                    lambda: sum(isinstance(m, predicate) for m in self.received) >= count
                ),
                10,
            )

    async def transmit(self, apdu: bytes) -> None:
        host, writer = self.connections[-1]
        host.send_apdu(0, apdu)
        writer.write(host.data_to_send())


@pytest.fixture
async def recording_host() -> AsyncIterator[tuple[RecordingHost, int]]:
    host = RecordingHost()
    server = await asyncio.start_server(host.handle, "127.0.0.1", 0)
    async with server:
        yield host, server.sockets[0].getsockname()[1]


def daemon_for(port: int, *, reconnect: bool = False) -> Daemon:
    plan = Plan("127.0.0.1", port, None, (), None, reconnect, timeout=5)
    daemon = Daemon(plan, "console", 0)
    daemon.mirror.readers.append(daemon.mirror.new_reader("Virtual Reader", ToyCard()))
    return daemon


async def test_session_sends_exactly_the_sequence_qemu_expects(
    recording_host: tuple[RecordingHost, int],
) -> None:
    host, port = recording_host
    daemon = daemon_for(port)
    run = asyncio.create_task(daemon.run(read_stdin=False))
    await host.wait_for(ATR)
    await host.transmit(bytes.fromhex("00A4040000"))
    await host.wait_for(APDU)
    daemon.stop()
    assert await asyncio.wait_for(run, 10) == 0
    await host.wait_for(ReaderRemove, 2)
    assert host.received == [
        Init(0xFFFFFFFF, 2, (0xE000_0000,)),  # CARD_RESET | RESPONSE_CHAIN | READ_AHEAD
        ReaderRemove(0),  # clears what an earlier client left on a QEMU
        ReaderAdd(0xFFFFFFFF, "Virtual Reader"),
        ATR(0, CARD_ATR),
        APDU(0, bytes.fromhex("00A49000")),
        CardRemove(0),  # a clean exit takes the card out, then the reader
        ReaderRemove(0),
    ]


async def test_console_remove_and_insert_reach_the_host(
    recording_host: tuple[RecordingHost, int],
) -> None:
    host, port = recording_host
    daemon = daemon_for(port)
    run = asyncio.create_task(daemon.run(read_stdin=False))
    await host.wait_for(ATR)
    await daemon.console.execute("remove 0")
    await host.wait_for(CardRemove)
    await daemon.console.execute("insert")
    await host.wait_for(ATR, 2)
    daemon.stop()
    assert await asyncio.wait_for(run, 10) == 0


async def test_garbage_from_the_host_is_logged_and_ends_the_run(
    recording_host: tuple[RecordingHost, int],
) -> None:
    host, port = recording_host
    host.garbage_on_connect = b"\xff" * 64
    daemon = daemon_for(port)
    assert await asyncio.wait_for(daemon.run(read_stdin=False), 10) == 1


async def test_with_reconnect_a_lost_connection_is_retried_and_state_reannounced(
    recording_host: tuple[RecordingHost, int],
) -> None:
    host, port = recording_host
    host.garbage_on_connect = b"\xff" * 64  # the first connection goes bad
    daemon = daemon_for(port, reconnect=True)
    run = asyncio.create_task(daemon.run(read_stdin=False))
    await host.wait_for(ATR)  # announced again on the second connection
    assert len(host.connections) == 2
    daemon.stop()
    assert await asyncio.wait_for(run, 10) == 0


async def test_against_our_own_server_the_card_is_usable() -> None:
    inserted: asyncio.Queue[CardInserted] = asyncio.Queue()
    responses: list[bytes] = []

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                responses.append(await session.transmit(event.reader_id, b"\x00\xca\x00\x00"))
                await inserted.put(event)

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        daemon = daemon_for(server.port)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        event = await asyncio.wait_for(inserted.get(), 10)
        assert event == CardInserted(0, CARD_ATR)
        assert responses == [b"\x00\xca\x90\x00"]
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-e", "use_hw=no soft=(,R,GIDS,,c)", "h", "1"], "invalid smartcard type"),
        (["-e", "nssemul", "h", "1"], "NSS hardware tokens"),
        (["-p", "--pcsc", "h", "1"], "compares an emulated card"),
        (["--pcsc", "h", "99999"], "out of range"),
        (["--pcsc", "h", "no-such-service"], "neither a number nor a service"),
    ],
)
def test_command_line_errors_are_explained(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_from_args(parse_args(argv))


def test_passthru_in_emul_options_means_real_readers() -> None:
    plan = plan_from_args(parse_args(["-e", "passthru", "h", "1"]))
    assert plan.pcsc == ""
    assert plan.emul is None


def test_pcsc_takes_a_reader_name_only_after_an_equals_sign() -> None:
    assert parse_args(["--pcsc", "host", "2001"]).pcsc == ""
    args = parse_args(["--pcsc=Gemalto", "host", "2001"])
    assert (args.pcsc, args.host, args.port) == ("Gemalto", "host", "2001")


def test_usage_errors_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--pcsc", "h", "99999"])
    assert caught.value.code == 2
    assert "out of range" in capsys.readouterr().err


PKI_SELECT = bytes.fromhex("00A4040007A0000000790100")


async def run_against_our_server(plan: Plan) -> tuple[CardInserted, bytes]:
    """Run vscclient until our server has seen the card and selected its first PKI applet."""
    seen: asyncio.Queue[tuple[CardInserted, bytes]] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                await seen.put((event, await session.transmit(event.reader_id, PKI_SELECT)))

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        daemon = Daemon(replace(plan, port=server.port), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        result = await asyncio.wait_for(seen.get(), 30)
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0
    return result


async def test_a_cacard_directory_is_served_as_a_cac_card(tmp_path: Path) -> None:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    args = parse_args(["--card", str(tmp_path / "card"), "127.0.0.1", "1"])
    event, response = await run_against_our_server(plan_from_args(args))
    assert event.atr == CAC_ATR
    assert response[-2:] in (b"\x90\x00", b"\x61\x0d")


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("certutil") is None, reason="needs certutil (libnss3-tools)")
async def test_the_seed_nss_syntax_serves_the_database_certificates(tmp_path: Path) -> None:
    db = make_nssdb(tmp_path / "db")
    emul = f'db="sql:{db.directory}" use_hw=no soft=(,Test,CAC,,cert1,cert2,cert3)'
    event, response = await run_against_our_server(
        plan_from_args(parse_args(["-e", emul, "127.0.0.1", "1"]))
    )
    assert event.atr == CAC_ATR
    assert response[-2:] in (b"\x90\x00", b"\x61\x0d")


def test_a_card_directory_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--card", str(tmp_path), "127.0.0.1", "1"])
    assert caught.value.code == 2


@pytest.mark.interop
async def test_a_pkcs11_token_card_keeps_its_keys_on_the_token(tmp_path: Path) -> None:
    pkcs11 = pytest.importorskip("pkcs11")
    from ..cacard.softhsm import LABEL, PIN, import_rsa_key, softhsm, softhsm_missing

    if softhsm_missing():
        pytest.skip("needs SoftHSM2 (Debian softhsm2)")
    saved = os.environ.get("SOFTHSM2_CONF")
    try:
        module = softhsm(tmp_path / "softhsm")
        token = pkcs11.lib(str(module)).get_token(token_label=LABEL)
        with token.open(rw=True, user_pin=PIN) as session:
            import_rsa_key(session, rsa.generate_private_key(65537, 2048), b"\x01", "id")
        pin_file = tmp_path / "pin"
        pin_file.write_text(PIN + "\n")
        argv = ["--pkcs11", str(module), "--token", LABEL, "--token-pin-file", str(pin_file)]
        event, response = await run_against_our_server(
            plan_from_args(parse_args([*argv, "127.0.0.1", "1"]))
        )
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved
    assert event.atr == CAC_ATR
    assert response[-2:] in (b"\x90\x00", b"\x61\x0d")


def test_token_options_need_a_module() -> None:
    with pytest.raises(UsageError, match="need --pkcs11"):
        plan_from_args(parse_args(["--pcsc", "--token", "x", "h", "1"]))
