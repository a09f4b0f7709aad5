"""The guest-login benchmark: its APDU counter and its report without a guest, and one real
login (a single guest boot, over the delay proxy) when QEMU is there. Nothing here is timed:
the report's numbers come from ``python -m benchmarks.bench_login``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks.bench_login import (
    LOGIN_STEPS,
    WAN_TARGET,
    ApduCount,
    LoginRun,
    TracedApdu,
    login_checks,
    run_login,
    section,
    write_trace,
)
from benchmarks.delay_proxy import Direction
from vscard import encode
from vscard.messages import APDU, Init


def frames(*messages: APDU | Init) -> bytes:
    return b"".join(encode(message) for message in messages)


def test_the_counter_counts_commands_get_responses_and_61xx_once_the_login_starts() -> None:
    count = ApduCount()
    select = APDU(0, bytes.fromhex("00a4040007a0000000790100"))
    count.observe(Direction.DOWNSTREAM, frames(select))  # before the login: not counted
    count.counting = True
    stream = frames(select, APDU(0, bytes.fromhex("00c0000010")), select)
    for offset in range(0, len(stream), 5):  # split anywhere
        count.observe(Direction.DOWNSTREAM, stream[offset : offset + 5])
    count.observe(Direction.UPSTREAM, frames(APDU(0, b"\x61\x10"), APDU(0, b"\x90\x00")))
    assert (count.commands, count.get_responses, count.more_data) == (3, 1, 1)
    assert count.instructions == {0xA4: 2, 0xC0: 1}


def test_a_traced_count_pairs_each_command_with_its_response_under_the_current_step(
    tmp_path: Path,
) -> None:
    count = ApduCount(counting=True, trace=[])
    count.step = "card-driver"
    count.observe(Direction.DOWNSTREAM, frames(APDU(0, bytes.fromhex("00cb3fff035c017e08"))))
    count.observe(Direction.UPSTREAM, frames(APDU(0, bytes.fromhex("7e124f0b6114"))))
    count.step = "sign"
    count.observe(Direction.DOWNSTREAM, frames(APDU(0, bytes.fromhex("00c0000014"))))
    assert count.trace == [
        TracedApdu(
            "card-driver", bytes.fromhex("00cb3fff035c017e08"), bytes.fromhex("7e124f0b6114")
        ),
        TracedApdu("sign", bytes.fromhex("00c0000014")),  # no response yet
    ]
    file = tmp_path / "traces" / "wan-c-t1-1.txt"
    write_trace(file, count)
    assert file.read_text().splitlines() == [
        "card-driver 00cb3fff035c017e08 7e124f0b6114",
        "sign 00c0000014 -",
    ]


def test_an_untraced_count_keeps_no_exchanges() -> None:
    count = ApduCount(counting=True)
    count.observe(Direction.DOWNSTREAM, frames(APDU(0, bytes.fromhex("00a4040000"))))
    assert count.trace is None
    assert count.commands == 1


def test_the_counter_skips_other_messages() -> None:
    count = ApduCount(counting=True)
    count.observe(Direction.UPSTREAM, frames(Init()))
    assert count.commands == count.more_data == 0


def test_the_login_times_the_same_five_steps_with_or_without_opensc_s_cache() -> None:
    plain = login_checks("default")
    cached = login_checks("default", opensc_cache=True)
    assert [check.name for check in plain[-len(LOGIN_STEPS) :]] == list(LOGIN_STEPS)
    assert cached[0].name == "login.opensc-cache"
    assert cached[1:] == plain


def run(path: str, mode: str, seconds: float) -> LoginRun:
    steps = dict.fromkeys(LOGIN_STEPS, seconds / len(LOGIN_STEPS))
    apdus = ApduCount(commands=300) if mode == "wan" else None
    return LoginRun(path, mode, seconds, steps, apdus)  # type: ignore[arg-type]


def test_the_report_gives_medians_ratios_to_the_reference_and_the_wan_target() -> None:
    runs = [
        *(run("a", "loopback", s) for s in (4.0, 5.0, 6.0)),
        *(run("c", "loopback", s) for s in (3.0, 4.0, 9.0)),
        *(run("a", "wan", s) for s in (20.0, 22.0, 24.0)),
        *(run("c-t1", "wan", s) for s in (10.0, 11.0, 12.0)),
    ]
    result = section(runs, 0.025, (1.0, 1.5), ["wan b round 2"])
    figures = {figure.name.split(":")[0]: figure for figure in result.figures}
    assert figures["login loopback c"].ratio == pytest.approx(4.0 / 5.0)
    assert figures["login loopback c"].target is None  # the target is the WAN's
    wan = figures["login wan c-t1"]
    assert wan.ratio == pytest.approx(0.5)
    assert wan.target is not None
    assert wan.target.value == WAN_TARGET
    assert wan.met
    assert figures["login wan a"].baseline is None  # the reference itself
    assert result.series["wan c-t1"]["apdus"][0]["commands"] == 300
    assert any("wan b round 2" in note for note in result.notes)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")
def test_one_login_through_ccid_passthru_over_the_delay_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One guest boot: path c-t1 over a 2 ms proxy, so the run, the proxy's counting and the
    report all work end to end."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    result = run_login(runs=1, delay_ms=2, paths=["c-t1"], modes=["wan"])
    if not result.figures and result.notes[0].startswith("not measured"):
        pytest.skip(result.notes[0])
    assert not [note for note in result.notes if note.startswith("failed runs")], result.notes
    (figure,) = result.figures
    assert figure.value > 0
    (row,) = result.series.values()
    (apdus,) = row["apdus"]
    assert apdus["commands"] > 0
    assert apdus["by_ins"]["A4"] > 0  # OpenSC selects the applications


def test_the_report_says_how_many_apdus_the_target_allows_by_the_round_trip_model() -> None:
    runs = [
        run("a", "wan", 20.0),
        run("c-t1", "loopback", 4.0),
        run("c-t1", "wan", 15.0),
    ]
    notes = section(runs, 0.025, (1.0, 1.0)).notes
    # 0.5 x 20 s - 4 s leaves 6 s, 120 round trips of 50 ms; the run() logins sent 300.
    assert any(
        note.startswith("c-t1 meets the WAN target with at most 120 APDUs") for note in notes
    )
    assert any(note.endswith("it sent 300") for note in notes)
    without_loopback = section([run("a", "wan", 20.0), run("c-t1", "wan", 15.0)], 0.025, (1, 1))
    assert not any("meets the WAN target" in note for note in without_loopback.notes)
