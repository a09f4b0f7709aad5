"""TLS on the VSCard channel, allow lists and per-source limits."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import ssl
from pathlib import Path

import pytest

import vscard
from tests.logs import capture_logs
from vscard import CardInserted, Session
from vscard.tls import client_context, server_context

from ..tls_pki import TlsFiles, make_tls_files

ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"))


async def card(apdu: bytes) -> bytes:
    return b"\x90\x00"


async def idle(session: Session) -> None:
    async for _ in session.events():
        pass


async def test_mutual_tls_session_works_end_to_end(pki: TlsFiles) -> None:
    inserted: asyncio.Queue[tuple[CardInserted, bytes]] = asyncio.Queue()

    async def handle(session: Session) -> None:
        async for event in session.events():
            if isinstance(event, CardInserted):
                await inserted.put((event, await session.transmit(0, b"\x00\xa4\x04\x00")))

    context = server_context(pki.server_cert, pki.server_key, pki.ca)
    async with await vscard.serve(handle, "127.0.0.1", 0, ssl=context) as server:
        tls = client_context(pki.ca, pki.client_cert, pki.client_key)
        async with await vscard.connect("127.0.0.1", server.port, ssl=tls) as client:
            reader = await client.add_reader(transmit=card)
            await reader.insert(ATR)
            event, response = await asyncio.wait_for(inserted.get(), 10)
            assert event.atr == ATR
            assert response == b"\x90\x00"


async def test_a_client_with_an_untrusted_certificate_is_refused_and_logged(
    pki: TlsFiles,
) -> None:
    context = server_context(pki.server_cert, pki.server_key, pki.ca)
    async with await vscard.serve(idle, "127.0.0.1", 0, ssl=context) as server:
        intruder = client_context(pki.ca, pki.intruder_cert, pki.intruder_key)
        with capture_logs() as logs:
            with pytest.raises((ssl.SSLError, ConnectionError, vscard.VSCardError)):
                await vscard.connect("127.0.0.1", server.port, ssl=intruder, timeout=5)
            # The refusal is logged by the server, naming the peer and the TLS error.
            # The server logs after the client has failed: nothing to await but the log.
            while not any(e["event"] == "vscard.tls_refused" for e in logs):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        (refusal,) = [entry for entry in logs if entry["event"] == "vscard.tls_refused"]
        assert refusal["peer"].startswith("127.0.0.1:")
        assert "certificate" in refusal["error"].lower() or "alert" in refusal["error"].lower()
        assert server.connections == 0


async def test_a_client_without_a_certificate_is_refused_under_mutual_tls(
    pki: TlsFiles,
) -> None:
    context = server_context(pki.server_cert, pki.server_key, pki.ca)
    async with await vscard.serve(idle, "127.0.0.1", 0, ssl=context) as server:
        with pytest.raises((ssl.SSLError, ConnectionError, vscard.VSCardError)):
            await vscard.connect("127.0.0.1", server.port, ssl=client_context(pki.ca), timeout=5)


@pytest.mark.skipif(importlib.util.find_spec("uvloop") is None, reason="uvloop not installed")
def test_tls_is_served_and_refused_on_uvloop(pki: TlsFiles) -> None:
    # uvloop reads a connection as soon as it accepts it: a plain connection upgraded with
    # start_tls lost the ClientHello to its StreamReader and the handshake stalled (uvloop#707).
    import uvloop

    async def both() -> None:
        await test_mutual_tls_session_works_end_to_end(pki)
        await test_a_client_with_an_untrusted_certificate_is_refused_and_logged(pki)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(both())


async def test_a_plaintext_client_gets_nothing_from_a_tls_server(pki: TlsFiles) -> None:
    context = server_context(pki.server_cert, pki.server_key)
    async with await vscard.serve(idle, "127.0.0.1", 0, ssl=context) as server:
        with pytest.raises((vscard.VSCardError, ConnectionError, TimeoutError)):
            await vscard.connect("127.0.0.1", server.port, timeout=5)


async def test_the_client_checks_the_servers_name(pki: TlsFiles) -> None:
    context = server_context(pki.server_cert, pki.server_key)
    async with await vscard.serve(idle, "127.0.0.1", 0, ssl=context) as server:
        with pytest.raises(ssl.SSLCertVerificationError):
            await vscard.connect(
                "127.0.0.1", server.port, ssl=client_context(pki.ca), server_hostname="evil"
            )


async def raw_init_from(source: str, port: int) -> bytes:
    """Connect from ``source``, send Init, return what comes back before EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(vscard.encode(vscard.Init()))
    try:
        return await asyncio.wait_for(reader.read(24), 5)
    except ConnectionResetError:  # closed before our Init was read: refused
        return b""
    finally:
        writer.close()


async def test_only_allowed_addresses_are_served() -> None:
    allow = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("127.0.0.4/30")]
    async with await vscard.serve(idle, "127.0.0.1", 0, allow=allow) as server:
        assert len(await raw_init_from("127.0.0.1", server.port)) == 24
        assert len(await raw_init_from("127.0.0.5", server.port)) == 24
        assert await raw_init_from("127.0.0.2", server.port) == b""


async def test_connections_per_source_are_limited() -> None:
    async with await vscard.serve(idle, "127.0.0.1", 0, max_connections_per_source=2) as server:
        first = [await vscard.connect("127.0.0.1", server.port) for _ in range(2)]
        assert await raw_init_from("127.0.0.1", server.port) == b""
        # Another source still gets in.
        assert len(await raw_init_from("127.0.0.3", server.port)) == 24
        await first[0].close()
        # The slot frees when the server has seen the close; no event tells the client.
        while server.connections > 1:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        assert len(await raw_init_from("127.0.0.1", server.port)) == 24
        await first[1].close()


def test_tls_contexts_use_modern_defaults(pki: TlsFiles) -> None:
    server = server_context(pki.server_cert, pki.server_key, pki.ca)
    client = client_context(pki.ca)
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert server.verify_mode == ssl.CERT_REQUIRED
    assert client.check_hostname
    assert client.verify_mode == ssl.CERT_REQUIRED


def test_key_files_are_private(pki: TlsFiles) -> None:
    assert Path(pki.server_key).stat().st_mode & 0o077 == 0
