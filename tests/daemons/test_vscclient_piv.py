"""vscclient serves cards with PIV: card directories (their card.json says so), NSS cards (the
card type of ``soft=(...)``, or ``--profile`` for ``-c``) and PKCS#11 cards (``--profile``), with
``--puk`` for the NSS and token ones. Each is driven as a PIV host drives it, over our VSCard
host: SELECT, GET DATA CHUID, VERIFY 80, GENERAL AUTHENTICATE 9A."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

import vscard
from cacard import CardRequest, generate_card
from cacard.atr import CAC_ATR_T1, PIV_ATR
from cacard.profile import Applications
from daemons.emul_options import SoftReader
from daemons.vscclient import Daemon, Plan, UsageError, parse_args, plan_from_args

from ..interop.guest.nssdb import make_nssdb
from .piv_session import Transmit, card_key_9a, exchange, key_9a, piv_session

T = TypeVar("T")
PUK = "12345678"
SELECT_CAC_PKI = bytes.fromhex("00A4040007A0000000790100")


async def with_card(plan: Plan, use: Callable[[vscard.CardInserted, Transmit], Awaitable[T]]) -> T:
    """Run vscclient with ``plan`` against our VSCard host until ``use`` is done with its card."""
    results: asyncio.Queue[T | BaseException] = asyncio.Queue()

    async def handle(session: vscard.Session) -> None:
        async for event in session.events():
            if isinstance(event, vscard.CardInserted):

                async def transmit(apdu: bytes, reader: int = event.reader_id) -> bytes:
                    return await session.transmit(reader, apdu)

                try:
                    await results.put(await use(event, transmit))
                except Exception as error:  # reported to the test, not lost in the server
                    await results.put(error)

    async with await vscard.serve(handle, "127.0.0.1", 0) as server:
        daemon = Daemon(replace(plan, port=server.port), "console", 0)
        run = asyncio.create_task(daemon.run(read_stdin=False))
        result = await asyncio.wait_for(results.get(), 60)
        daemon.stop()
        assert await asyncio.wait_for(run, 10) == 0
    if isinstance(result, BaseException):
        raise result
    return result


def plan(*argv: str) -> Plan:
    return plan_from_args(parse_args([*argv, "127.0.0.1", "1"]))


@pytest.mark.parametrize("applications", [Applications.PIV, Applications.CAC_PIV])
async def test_a_card_directory_with_piv_serves_its_piv_application(
    tmp_path: Path, applications: Applications
) -> None:
    directory = tmp_path / "card"
    request = CardRequest(
        key_size=1024,
        pin_iterations=1,
        applications=applications,
        atr=applications.default_atr,
    )
    generate_card(directory, request)

    async def use(event: vscard.CardInserted, transmit: Transmit) -> tuple[bytes, int]:
        session = await piv_session(transmit, key_9a(directory))
        assert (session.select_sw, session.verify_sw) == (0x9000, 0x9000)
        assert session.chuid.startswith(b"\x53")
        _, cac_sw = await exchange(transmit, SELECT_CAC_PKI)
        return event.atr, cac_sw

    atr, cac_sw = await with_card(plan("--card", str(directory)), use)
    assert atr == applications.default_atr
    # The CAC applets are there on cac+piv only.
    assert (cac_sw == 0x9000) is applications.cac


async def test_key_9a_is_the_card_directorys_first_credential(tmp_path: Path) -> None:
    """GENERAL AUTHENTICATE 9A signs with the key of cert-1.pem, which the card serves."""
    directory = tmp_path / "card"
    generate_card(
        directory, CardRequest(key_size=1024, pin_iterations=1, applications=Applications.PIV)
    )

    async def use(event: vscard.CardInserted, transmit: Transmit) -> rsa.RSAPublicKey:
        await piv_session(transmit, key_9a(directory))
        return await card_key_9a(transmit)

    served = await with_card(plan("--card", str(directory)), use)
    assert served.public_numbers() == key_9a(directory).public_numbers()


# -- the command line ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "applications"),
    [
        (["-c", "a"], Applications.CAC),
        (["-c", "a", "--profile", "piv"], Applications.PIV),
        (["-c", "a", "--profile", "cac+piv"], Applications.CAC_PIV),
        (["-e", "soft=(,R,PIV,,a)"], Applications.PIV),
        (["-e", "soft=(,R,piv,,a)", "--profile", "piv"], Applications.PIV),
        (["-e", "soft=(,R,Cac+Piv,,a)", "--puk", PUK], Applications.CAC_PIV),
    ],
)
def test_the_profile_of_an_nss_card(argv: list[str], applications: Applications) -> None:
    options = plan(*argv).emul
    assert options is not None
    (reader,) = options.soft_readers
    assert reader.applications is applications


def test_dash_c_readers_take_the_profile_beside_the_types_of_dash_e() -> None:
    options = plan("-e", "soft=(,R,PIV,,a)", "-c", "b", "--profile", "piv").emul
    assert options is not None
    assert options.soft_readers == (
        SoftReader("", "R", ("a",), "", Applications.PIV),
        SoftReader("", "Virtual Reader", ("b",), "", Applications.PIV),
    )


def test_the_pkcs11_card_takes_the_profile_and_the_puk() -> None:
    chosen = plan("--pkcs11", "libx.so", "--profile", "cac+piv", "--puk", PUK)
    assert (chosen.profile, chosen.puk) == (Applications.CAC_PIV, PUK)
    assert plan("--pkcs11", "libx.so").profile is Applications.CAC


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["-e", "soft=(,R,CAC,,a)", "--profile", "piv"],
            r"--profile piv conflicts with soft=\(,R,CAC,...\)",
        ),
        (
            ["-e", "soft=(,R,PIV,,a)", "-c", "b", "--profile", "cac"],
            r"--profile cac conflicts with soft=\(,R,PIV,...\)",
        ),
        (["-e", "soft=(,R,GIDS,,a)"], "invalid smartcard type 'GIDS'"),
        (["--card", "d", "--profile", "piv"], "card directory .* has its own"),
        (["--card", "d", "--puk", PUK], "--puk is for a card with PIV"),
        (["-c", "a", "--puk", PUK], "--puk is for a card with PIV"),
        (["--pkcs11", "m", "--puk", PUK], "--puk is for a card with PIV"),
        (
            ["-c", "a", "--profile", "piv", "--puk", "1234"],
            "--puk: a PUK has 8 digits: pin length=4",
        ),
        (["-c", "a", "--profile", "piv", "--puk", "1234567x"], "8 digits"),
        (["--pcsc", "--profile", "piv"], "is for a card from -e, -c or --pkcs11"),
    ],
)
def test_profile_and_puk_errors_name_what_is_wrong(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan(*argv)


def test_an_unknown_profile_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse_args(["-c", "a", "--profile", "gids", "h", "1"])


# -- NSS and PKCS#11 cards with PIV -----------------------------------------------------------


async def piv_use_with_puk(event: vscard.CardInserted, transmit: Transmit) -> bytes:
    """The PIV session with the card's own 9A certificate, then the PUK resets the PIN."""
    session = await piv_session(transmit, await card_key_9a(transmit))
    assert (session.select_sw, session.verify_sw) == (0x9000, 0x9000)
    new_pin = b"24682468"
    _, reset_sw = await exchange(transmit, bytes.fromhex("002C008010") + PUK.encode() + new_pin)
    assert reset_sw == 0x9000
    _, verify_sw = await exchange(transmit, bytes.fromhex("0020008008") + new_pin)
    assert verify_sw == 0x9000
    return event.atr


needs_certutil = pytest.mark.skipif(
    shutil.which("certutil") is None, reason="needs certutil (libnss3-tools)"
)


@pytest.mark.interop
@needs_certutil
@pytest.mark.parametrize(
    ("card_type", "atr"), [("PIV", PIV_ATR), ("cac+piv", CAC_ATR_T1)], ids=["piv", "cac+piv"]
)
async def test_an_nss_card_of_type_piv_serves_piv_with_its_puk(
    tmp_path: Path, card_type: str, atr: bytes
) -> None:
    db = make_nssdb(tmp_path / "db")
    emul = f'db="{db.spec}" use_hw=no soft=(,Test,{card_type},,cert1,cert2,cert3)'
    # The guard never lets a PUK try through (its counter cannot be asked for): off here.
    chosen = plan("-e", emul, "--puk", PUK, "--pin-guard", "0")
    assert await with_card(chosen, piv_use_with_puk) == atr


@pytest.mark.interop
@needs_certutil
async def test_dash_c_with_profile_piv(tmp_path: Path) -> None:
    db = make_nssdb(tmp_path / "db")
    chosen = plan("-e", f'db="{db.spec}"', "-c", "cert1", "--profile", "piv", "--puk", PUK)
    assert await with_card(replace(chosen, guard=replace(chosen.guard, keep=0)), piv_use_with_puk)


@pytest.mark.interop
async def test_a_pkcs11_card_with_profile_piv_signs_on_the_token(tmp_path: Path) -> None:
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
        chosen = plan(*argv, "--profile", "piv", "--puk", PUK, "--pin-guard", "0")
        atr = await with_card(chosen, piv_use_with_puk)
    finally:
        if saved is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = saved
    assert atr == PIV_ATR
