"""vscclient and ccid-passthru with mutual TLS and allow lists, as processes and in process."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ccid.usbip import list_devices
from daemons.vscclient import Daemon, parse_args, plan_from_args
from tests.cacard import cards

from ..tls_pki import TlsFiles, make_tls_files
from .passthru_process import running_passthru

card_dir = cards.card_dir


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("pki"))


def tls_server_args(pki: TlsFiles) -> list[str]:
    return [
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-ca", str(pki.ca),
    ]  # fmt: skip


async def test_vscclient_reaches_ccid_passthru_over_mutual_tls(
    pki: TlsFiles, card_dir: Path
) -> None:
    async with running_passthru(tls_server_args(pki)) as passthru:
        argv = [
            "--card", str(card_dir), "--tls-ca", str(pki.ca),
            "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
            "--timeout", "30", "127.0.0.1", str(passthru.vscard_port),
        ]  # fmt: skip
        daemon = Daemon(plan_from_args(parse_args(argv)), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        async with asyncio.timeout(20):
            while not await list_devices(port=passthru.usbip_port):  # noqa: ASYNC110
                await asyncio.sleep(0.02)  # another process: no event to await
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0


async def test_an_untrusted_client_certificate_is_refused_and_logged(
    pki: TlsFiles, card_dir: Path
) -> None:
    async with running_passthru(tls_server_args(pki), capture_log=True) as passthru:
        argv = [
            "--card", str(card_dir), "--tls-ca", str(pki.ca),
            "--tls-cert", str(pki.intruder_cert), "--tls-key", str(pki.intruder_key),
            "--timeout", "30", "127.0.0.1", str(passthru.vscard_port),
        ]  # fmt: skip
        daemon = Daemon(plan_from_args(parse_args(argv)), "console", 0)
        assert await asyncio.wait_for(daemon.run(read_stdin=False), 20) == 1
        refusal = await asyncio.wait_for(passthru.log_event("vscard.tls_refused"), 10)
        assert refusal["peer"].startswith("127.0.0.1:")
        assert await list_devices(port=passthru.usbip_port) == ()


async def test_a_client_outside_the_allow_list_is_refused(card_dir: Path) -> None:
    async with running_passthru(["--allow", "127.0.0.2/32"], capture_log=True) as passthru:
        argv = ["--card", str(card_dir), "127.0.0.1", str(passthru.vscard_port)]
        daemon = Daemon(plan_from_args(parse_args(argv)), "console", 0)
        assert await asyncio.wait_for(daemon.run(read_stdin=False), 20) == 1
        refusal = await asyncio.wait_for(passthru.log_event("vscard.connection_refused"), 10)
        assert refusal["reason"] == "not in the allow list"


async def test_exposed_listeners_are_warned_about() -> None:
    async with running_passthru(
        ["--usbip", "0.0.0.0:0"], listen="0.0.0.0:0", capture_log=True
    ) as passthru:
        usbip = await asyncio.wait_for(passthru.log_event("passthru.usbip_exposed"), 10)
        vscard = await asyncio.wait_for(passthru.log_event("passthru.vscard_exposed"), 10)
        assert "USB/IP" in usbip["advice"]
        assert "--tls-cert" in vscard["advice"]
    assert json.dumps(usbip)  # structured: every field is JSON
