"""vscclient's stdin commands."""

from __future__ import annotations

import asyncio
import io

import pytest

from daemons.console import Command, Console, parse_command, stdin_lines
from daemons.local_readers import HostMirror


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("insert\n", Command("insert")),
        ("remove 1", Command("remove", 1)),
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
