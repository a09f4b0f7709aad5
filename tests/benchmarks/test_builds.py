"""``run_all --compiled``'s bookkeeping (nothing here is timed): sections that cross a process
boundary, rows labelled by build and loop, the verdict table, and the check that refuses a
pure-Python interpreter; and ``profile_chain``'s reading of strace's output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import run_all
from benchmarks.profile_chain import parse
from benchmarks.report import Figure, Section, Target

#: A bound on a wedged child, not a synchronisation.
TIMEOUT = 60


def chain(loop: str, p50: float) -> Section:
    figure = Figure("chain p50 latency vs floor", p50, "us", 400.0, "floor p50",
                    Target("at_most", 1.0), loop)  # fmt: skip
    return Section(f"chain ({loop})", "round trips", [figure], {"ours": {"p50_us": p50}}, ["n"])


def test_a_section_survives_json_between_processes() -> None:
    section = chain("uvloop", 420.0)
    section.figures.append(Figure("frames", 2.0, "frames/s", note="a note", build="compiled"))
    assert Section.from_json(section.as_json()) == section


def test_labelled_sections_and_figures_name_their_build() -> None:
    section = run_all.labelled(chain("uvloop", 420.0), run_all.COMPILED)
    assert section.name == "chain (uvloop, compiled)"
    assert [f.build for f in section.figures] == ["compiled"]
    codec = run_all.labelled(Section("codec", "codecs"), run_all.PURE)
    assert codec.name == "codec (pure Python)"


def test_the_build_gain_and_the_verdicts_compare_the_same_figure_and_loop() -> None:
    sections = [
        run_all.labelled(chain("uvloop", 400.0), run_all.PURE),
        run_all.labelled(chain("uvloop", 320.0), run_all.COMPILED),
        run_all.labelled(chain("asyncio", 500.0), run_all.PURE),
    ]
    (gain,) = run_all.build_gain(sections).figures
    assert (gain.name, gain.value, gain.loop) == ("compiled gain: chain p50 latency (uvloop)",
                                                 1.25, "uvloop")  # fmt: skip
    loops = run_all.loop_gain(sections).figures
    assert [(f.name, f.build) for f in loops] == [
        ("uvloop gain: chain p50 latency (pure Python)", "pure Python")
    ]
    report = {"sections": [section.as_json() for section in sections]}
    table = run_all.verdicts(report)
    assert table[4] == "| figure (target) | pure Python, uvloop | compiled, uvloop | " \
        "pure Python, asyncio |"  # fmt: skip
    assert table[6] == "| chain p50 latency vs floor (ratio <= 1) | 1.00 yes | 0.80 yes | " \
        "1.25 **no** |"  # fmt: skip
    assert run_all.verdicts({"sections": [chain("uvloop", 1.0).as_json()]}) == []


@pytest.mark.skipif(
    run_all.not_compiled() is None, reason="this interpreter runs the compiled build"
)
def test_the_compiled_side_refuses_an_interpreter_without_the_compiled_build(
    tmp_path: Path,
) -> None:
    # This checkout's own interpreter: ccid.codec is the .py file.
    build = run_all.CompiledBuild(Path(sys.executable), tmp_path)
    for name in ("benchmarks", "tests"):
        (tmp_path / name).symlink_to(run_all.CHECKOUT / name, target_is_directory=True)
    problem = build.problem()
    assert problem is not None
    assert "ccid.codec is " in problem
    assert "not a compiled module" in problem
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--child", "codec", "--child-out",
         str(tmp_path / "out.json")],
        cwd=tmp_path, env=build.env(), capture_output=True, text=True, timeout=TIMEOUT,
        check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not a compiled module" in done.stderr
    assert not (tmp_path / "out.json").exists()


STRACE = """\
101   epoll_wait(3, [{events=EPOLLIN, data={u32=9, u64=1}}], 5, 0) = 1
101   recvfrom(9, "\\0\\0", 262144, 0, NULL, NULL) = 70
101   epoll_wait(3, [], 5, 0)           = 0
101   getpid()                          = 101
102   epoll_pwait(4,  <unfinished ...>
101   sendto(9, "\\0\\0", 48, 0, NULL, 0) = 48
102   <... epoll_pwait resumed>[{events=EPOLLIN, data={u32=9, u64=1}}], 1024, -1, NULL, 8) = 1
101   epoll_wait(3, [], 5, 2)           = 0
101   epoll_wait(3,  <detached ...>
"""


def test_strace_lines_are_counted_by_call_and_epoll_waits_by_kind() -> None:
    calls = parse(STRACE)
    assert calls == {
        "epoll_wait": 4, "epoll_pwait": 1, "turn": 2, "wake-up": 2, "cut": 1,
        "recvfrom": 1, "sendto": 1, "getpid": 1,
    }  # fmt: skip
