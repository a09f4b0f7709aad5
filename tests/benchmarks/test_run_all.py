"""``python -m benchmarks.run_all`` without matplotlib (the venv ``scripts/test`` makes): it says
so before measuring anything and writes the report without the plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: A bound on a wedged child, not a synchronisation.
TIMEOUT = 60

#: run_all's own main(), as if matplotlib were not installed, with one stub section in place of
#: minutes of benchmarks (tests/benchmarks/test_smoke.py runs each of those).
RUN_ALL = """
import sys
sys.modules["matplotlib"] = None  # import matplotlib raises ModuleNotFoundError
from benchmarks import run_all
from benchmarks.report import Figure, Section

def run_everything(quick, cpu):
    print("measuring...", flush=True)
    return [Section("codec", "stub", [Figure("frames", 1.0, "frames/s")])]

run_all.run_everything = run_everything
sys.argv = ["run_all", "--quick", "--out", sys.argv[1]]
run_all.main()
"""


def test_without_matplotlib_the_report_is_written_without_the_plot_and_says_so(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.png").write_bytes(b"an older run's plot")
    done = subprocess.run(
        [sys.executable, "-c", RUN_ALL, str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    first, measuring, *_, last = done.stdout.splitlines()
    assert first == "no report.png from this run: it needs matplotlib: pip install -e '.[bench]'"
    assert measuring == "measuring..."  # told before the benchmarks start
    assert last.endswith("(no report.png: it needs matplotlib: pip install -e '.[bench]')")
    assert json.loads((out / "report.json").read_text())["sections"][0]["name"] == "codec"
    report = (out / "report.md").read_text()
    assert "report.png" not in report
    assert "No plot: this run had no matplotlib (matplotlib: pip install -e '.[bench]')" in report
    assert not (out / "report.png").exists()
