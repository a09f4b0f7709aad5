"""A VSCard peer that vanishes without a FIN (a VM host that lost power, a laptop off the
network) is noticed in about 90 s, not the kernel's 2 hours: both ends of a VSCard connection,
like USB/IP's server, probe an idle peer, so its slot, readers and bus ids come free."""

from __future__ import annotations

import asyncio
import subprocess

import vscard

from .passthru_process import running_passthru


def _connections(port: int, side: str) -> list[str]:
    lines = subprocess.run(
        ["ss", "-tnoH", "state", "established", f"( {side} = :{port} )"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    return [line for line in lines if line.strip()]


async def keepalive_timers(port: int, side: str) -> list[str]:
    """Established TCP connections with ``side`` (sport/dport) ``port``, as ``ss -o`` shows
    them once no data is in flight.

    The kernel shows one timer per socket: while a segment waits for its (possibly delayed)
    ACK that is the retransmission timer, and only then the keepalive timer. Nothing signals
    that moment, so this polls ss for it, for at most 2 s (a delayed ACK takes at most 200 ms).
    """
    async with asyncio.timeout(2):
        while True:
            lines = _connections(port, side)
            if not any("timer:(on," in line for line in lines):
                return lines
            await asyncio.sleep(0.02)


async def _answer(apdu: bytes) -> bytes:
    return b"\x90\x00"


async def test_ccid_passthru_and_a_vscard_client_both_probe_an_idle_peer() -> None:
    async with (
        running_passthru() as passthru,
        await vscard.connect("127.0.0.1", passthru.vscard_port) as client,
    ):
        await client.add_reader("Reader", transmit=_answer)
        # The server's socket (sport = its port) and ours (dport = its port).
        server_side = await keepalive_timers(passthru.vscard_port, "sport")
        client_side = await keepalive_timers(passthru.vscard_port, "dport")
    assert ["timer:(keepalive," in line for line in server_side] == [True], server_side
    assert ["timer:(keepalive," in line for line in client_side] == [True], client_side


async def test_a_vscard_server_in_a_library_probes_too() -> None:
    connected = asyncio.Event()

    async def handle(session: vscard.Session) -> None:
        connected.set()
        async for _ in session.events():  # until the client leaves
            pass

    async with (
        await vscard.serve(handle, "127.0.0.1", 0) as server,
        await vscard.connect("127.0.0.1", server.port),
    ):
        await connected.wait()
        timers = await keepalive_timers(server.port, "sport")
    assert ["timer:(keepalive," in line for line in timers] == [True], timers
