"""The opt-in compiled build (``scripts/build-compiled``, docs/compiled.md).

The module list is checked everywhere; the rest runs only when the installed build has those
modules compiled (mypyc), and checks what the compiled path must keep of the pure one: the
same wire values, still frozen, still equal to what their constructors build. Everything else
is the whole suite, which runs unchanged on either build. scripts/test-compiled sets
``VSCARD_EXPECT_COMPILED=1``: then a listed module that is not compiled fails the run instead
of skipping these tests.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import vscard
from cardfloor.iso7816 import apdu
from cardfloor.iso7816.apdu import CommandAPDU
from ccid.codec import decode_command
from ccid.codec import encode as encode_ccid
from ccid.messages import PC_to_RDR_XfrBlock
from ccid.usbip import CmdSubmit, Direction, encode_usbip
from ccid.usbip.codec import RequestDecoder

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build-compiled"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def listed_modules() -> list[str]:
    """The ``MODULES=( ... )`` list of scripts/build-compiled, as module names."""
    block = re.search(r"^MODULES=\(\n(.*?)^\)", SCRIPT.read_text(), re.MULTILINE | re.DOTALL)
    assert block, "scripts/build-compiled has no MODULES=( ... ) list"
    paths = block.group(1).split()
    return [path.removesuffix(".py").replace("/", ".") for path in paths]


def is_compiled(name: str) -> bool:
    return isinstance(
        importlib.import_module(name).__loader__, importlib.machinery.ExtensionFileLoader
    )


MODULES = listed_modules()
COMPILED = all(is_compiled(name) for name in MODULES)
compiled_only = pytest.mark.skipif(not COMPILED, reason="the compiled build is not installed")


def test_the_list_names_importable_modules() -> None:
    # find_spec, not the source tree: the compiled job runs the suite outside the checkout.
    assert MODULES
    for name in MODULES:
        assert importlib.util.find_spec(name) is not None, name


def test_either_every_listed_module_is_compiled_or_none() -> None:
    # A half-compiled tree (a stale .so beside its .py) tests neither build.
    assert {is_compiled(name) for name in MODULES} in ({True}, {False})


@pytest.mark.skipif(
    os.environ.get("VSCARD_EXPECT_COMPILED") != "1", reason="the compiled build is not expected"
)
def test_every_listed_module_is_compiled_when_the_compiled_build_is_tested() -> None:
    # Otherwise a wheel that silently fell back to Python (or a run that imported the checkout's
    # sources) would pass as the compiled build.
    assert [name for name in MODULES if not is_compiled(name)] == []


PAYLOAD = bytes(range(256)) + bytes(5)


@compiled_only
def test_ccid_and_usbip_decoders_build_frozen_messages_equal_to_the_constructed() -> None:
    block = PC_to_RDR_XfrBlock(0, 1, PAYLOAD)
    decoded = decode_command(encode_ccid(block))
    assert decoded == block
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.bSlot = 1  # type: ignore[misc]
    assert dataclasses.replace(decoded, bSeq=2) == PC_to_RDR_XfrBlock(0, 2, PAYLOAD)

    submit = CmdSubmit(1, 0x10001, Direction.OUT, 2, 0, len(PAYLOAD), data=PAYLOAD)
    decoder = RequestDecoder()
    decoder.start_urb_phase()
    decoder.feed(encode_usbip(submit))
    request = decoder.next_request()
    assert request == submit
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seqnum = 2  # type: ignore[misc]


@compiled_only
def test_the_vscard_and_usbip_decoders_take_their_native_path() -> None:
    # The message classes are native too: the decoders store their fields directly (no slot
    # setters), and what they build is the frozen value the constructor would build.
    from ccid.usbip import codec as usbip_codec
    from vscard import codec as vscard_codec

    assert vscard_codec._NATIVE
    assert usbip_codec._NATIVE
    (message,) = vscard.Decoder().feed(vscard.encode(vscard.APDU(7, PAYLOAD)))
    assert message == vscard.APDU(7, PAYLOAD)
    assert hash(message) == hash(vscard.APDU(7, PAYLOAD))
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.data = b""  # type: ignore[misc]


@compiled_only
def test_command_apdu_parses_and_stays_frozen() -> None:
    command = CommandAPDU.from_bytes(bytes.fromhex("00A4040007A000000079010000"))
    assert (command.cla, command.ins, command.p1, command.p2) == (0, 0xA4, 4, 0)
    assert command.data == bytes.fromhex("A0000000790100")
    with pytest.raises(dataclasses.FrozenInstanceError):
        command.ins = 0xB0  # type: ignore[misc]
    # from_bytes and success() take their compiled path (native stores), not the slot setters.
    assert apdu._COMPILED
    assert apdu.success(b"\x01") == apdu.Response(0x9000, b"\x01")


@compiled_only
def test_the_sans_io_connections_still_speak_vscard() -> None:
    host, client = vscard.HostConnection(), vscard.ClientConnection()
    client.send_init()
    client.add_reader("one")
    host.receive_data(client.data_to_send())
    client.receive_data(host.data_to_send())
    assert client.reader_ids == frozenset({0})
    client.insert_card(0, bytes.fromhex("3B8F8001804F0CA0000003060300030000000068"))
    host.receive_data(client.data_to_send())
    host.send_apdu(0, bytes.fromhex("00A4040000"))
    client.receive_data(host.data_to_send())
    client.send_response(0, bytes.fromhex("9000"))
    decoded = vscard.Decoder().feed(client.data_to_send())
    assert decoded == [vscard.APDU(0, bytes.fromhex("9000"))]


@compiled_only
@pytest.mark.parametrize("command", sorted(PROJECT["scripts"]))
def test_every_command_says_it_is_the_compiled_build(command: str) -> None:
    done = subprocess.run(
        [Path(sys.executable).parent / command, "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.endswith(", compiled (mypyc)\n")
