"""vscclient's stdin commands."""

from __future__ import annotations

import asyncio
import io

import pytest

from daemons.console import Command, Console, parse_command, stdin_lines
from daemons.emulated_cards import EmulatedCard
from daemons.local_readers import HostMirror
from tests.cacard.cards import PIN_HEX, make_card


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("insert\n", Command("insert")),
        ("remove 1", Command("remove", 1)),
        ("reset 1", Command("reset", 1)),
        ("select 0", Command("select", 0)),
        ("debug 2", Command("debug", 2)),
        ("   ", Command("")),
        ("list", Command("list")),
        ("frob", "unknown command 'frob'; type help"),
        ("insert x", "insert: 'x' is not a number"),
        ("list 3", "list: too many arguments"),
    ],
)
def test_parse_command(line: str, parsed: Command | str) -> None:
    assert parse_command(line) == parsed


class Screen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.exited = False
        self.debug: list[int] = []


def console_with(*names: str) -> tuple[Console, Screen, HostMirror]:
    mirror = HostMirror()
    for name in names:
        mirror.readers.append(mirror.new_reader(name))
    screen = Screen()

    def on_exit() -> None:
        screen.exited = True

    console = Console(mirror, screen.lines.append, on_exit=on_exit, set_debug=screen.debug.append)
    return console, screen, mirror


async def test_list_select_and_unknown_readers() -> None:
    console, screen, _ = console_with("A", "B")
    await console.execute("select 1")
    await console.execute("list")
    await console.execute("remove 7")
    assert screen.lines == [
        "selected reader 1, B",
        "   0 no card      A (not on host)",
        "*  1 no card      B (not on host)",
        "no reader 7",
    ]


async def test_insert_without_a_card_says_so() -> None:
    console, screen, _ = console_with("A")
    await console.execute("insert")
    assert screen.lines == ["insert A: no card for this reader"]


async def test_debug_exit_and_quit() -> None:
    console, screen, _ = console_with()
    await console.execute("debug 3")
    await console.execute("debug")
    assert screen.lines == ["debug level = 3", "debug level = 3"]
    assert screen.debug == [3]
    await console.execute("quit")
    assert screen.exited


async def test_stdin_lines_end_with_none_and_no_stdin_reads_as_empty() -> None:
    """A Windows service or ``pythonw`` has no stdin at all (None): the console just ends."""
    loop = asyncio.get_running_loop()
    lines = stdin_lines(loop, io.StringIO("list\nexit\n"))
    assert [await lines.get() for _ in range(3)] == ["list\n", "exit\n", None]
    assert await stdin_lines(loop, None).get() is None


async def test_reset_leaves_nothing_verified_and_says_when_there_is_no_card() -> None:
    # What a guest reboot through QEMU cannot do: QEMU answers the guest's power cycles itself.
    card = EmulatedCard(make_card(), "card")
    console, screen, mirror = console_with("empty")
    reader = mirror.new_reader("A", card)
    mirror.readers.append(reader)
    assert await card.transmit(bytes.fromhex("0020000008" + PIN_HEX)) == b"\x90\x00"
    assert await card.transmit(bytes.fromhex("0020000000")) == b"\x90\x00"
    await console.execute("reset 1")
    await console.execute("reset 0")
    assert screen.lines == ["reset A: ok", "reset empty: no card in this reader"]
    assert (await card.transmit(bytes.fromhex("0020000000")))[0] == 0x63
