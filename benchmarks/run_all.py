"""Run every benchmark and write a report: ``report.json`` (for tools), ``report.md`` and
``report.png`` (for people; the plot needs matplotlib, the ``bench`` extra: without it the report
is written without the plot, and says so from its first line).

Every figure sits beside a baseline measured in the same run on the same machine; the JSON has
each figure, its baseline and ratio, its target and whether it was met, and the machine (CPU
model, cores, Python, kernel, date). The network benchmarks run on asyncio's own loop and on
uvloop when it is installed. The chain comparison runs pinned to one CPU (``--cpu``, like
``taskset -c``); the scale benchmark uses the whole machine. The vpcd benchmark needs root and
pcscd and is not part of this run (``python -m benchmarks.bench_vpcd``). The guest-login
benchmark boots QEMU guests (minutes) and runs only with ``--guest``.

With ``--compiled`` the codec, card, PIV, chain and scale benchmarks run on both builds in the
same run, one after the other for each loop: pure Python (this checkout) and the compiled build
(a wheel from ``scripts/build-compiled``, installed into its own venv, ``.cache/compiled/venv``;
or ``--compiled-python PY``, an interpreter that has it installed already). The compiled side runs
in processes that import the installed packages, with only ``benchmarks`` and ``tests`` taken
from this checkout; they refuse to measure when ``ccid.codec`` is not a compiled module.

Run: ``python -m benchmarks.run_all [--quick] [--guest] [--compiled] [--out DIR]`` (default
``benchmark-report/``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from benchmarks.bench_card import run_card
from benchmarks.bench_chain import run_chain
from benchmarks.bench_codec import run_codec
from benchmarks.bench_login import run_login
from benchmarks.bench_piv import run_piv
from benchmarks.bench_rsa import run_rsa
from benchmarks.bench_scale import run_scale
from benchmarks.bench_storm import run_storm
from benchmarks.bench_usbip import run_usbip
from benchmarks.report import Figure, Section, machine_info
from benchmarks.timing import LoopName, uvloop_available


def pinned(cpu: int | None, measure: Callable[[], Section]) -> Section:
    """Run ``measure`` with this process (and the children it starts) on ``cpu`` only."""
    if cpu is None or cpu not in os.sched_getaffinity(0):
        return measure()
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        section = measure()
    finally:
        os.sched_setaffinity(0, before)
    section.notes.append(f"every process pinned to CPU {cpu}")
    return section


#: The benchmarks ``--compiled`` measures on both builds.
Dual = Literal["codec", "card", "piv", "chain", "scale"]
#: Those of them that run once, not per event loop.
LOOPLESS: tuple[Dual, ...] = ("codec", "card", "piv")
#: The builds' labels, in section names and in :attr:`Figure.build`.
PURE = "pure Python"
COMPILED = "compiled"
#: The packages the compiled side must import from its venv, never from this checkout.
PACKAGES = ("vscard", "ccid", "cacard", "cardfloor", "daemons")
CHECKOUT = Path(__file__).resolve().parents[1]


def measure_dual(kind: Dual, loop: LoopName, quick: bool) -> Section:
    """One run of a benchmark measured on both builds, in this process's build (unpinned)."""
    seconds = 0.3 if quick else 1.0
    if kind == "codec":
        return run_codec(seconds / 2)
    if kind == "card":
        return run_card(seconds)
    if kind == "piv":
        return run_piv(seconds)
    count = 800 if quick else 4000
    if kind == "chain":
        return run_chain(count, 8, loop)
    return run_scale((1, 10, 100) if quick else (1, 10, 100, 1000), 2 if quick else 5, loop)


def labelled(section: Section, build: str) -> Section:
    """``section`` with ``build`` in its name ("chain (uvloop, compiled)") and its figures."""
    if section.name.endswith(")"):
        name = f"{section.name[:-1]}, {build})"
    else:
        name = f"{section.name} ({build})"
    figures = [dataclasses.replace(figure, build=build) for figure in section.figures]
    return dataclasses.replace(section, name=name, figures=figures)


@dataclass(frozen=True)
class CompiledBuild:
    """An interpreter with the compiled wheel installed, and a directory that holds only links
    to this checkout's ``benchmarks`` and ``tests``: the compiled side's ``PYTHONPATH`` and
    working directory, so ``python -m`` finds nothing else of the checkout there (the
    benchmarks' daemons inherit both)."""

    python: Path
    path: Path

    @classmethod
    def prepare(cls, python: Path, path: Path) -> CompiledBuild:
        path.mkdir(parents=True, exist_ok=True)
        for name in ("benchmarks", "tests"):
            link = path / name
            if not link.is_symlink():
                link.symlink_to(CHECKOUT / name, target_is_directory=True)
        # Absolute but not resolved: a venv's interpreter is a symlink that must stay one.
        build = cls(python.absolute(), path)
        problem = build.problem()
        if problem is not None:
            raise SystemExit(f"run_all --compiled: {problem}")
        return build

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.path)}

    def problem(self) -> str | None:
        """Why this interpreter cannot measure the compiled build, or None."""
        done = subprocess.run(
            [str(self.python), "-m", "benchmarks.run_all", "--check-compiled"],
            cwd=self.path, env=self.env(), capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            return f"{self.python}: {done.stdout.strip()} {done.stderr.strip()}".strip()
        return None

    def measure(self, kind: Dual, loop: LoopName, quick: bool) -> Section:
        with tempfile.TemporaryDirectory(prefix="run-all-") as work:
            out = Path(work) / "section.json"
            command = [str(self.python), "-m", "benchmarks.run_all", "--child", kind]
            command += ["--child-loop", loop, "--child-out", str(out)]
            command += ["--quick"] if quick else []
            subprocess.run(command, cwd=self.path, env=self.env(), check=True)
            return Section.from_json(json.loads(out.read_text()))


def not_compiled() -> str | None:
    """Why this process does not run the compiled build (``ccid.codec`` not an extension
    module, or a package imported from the checkout), or None."""
    modules = {name: importlib.import_module(name) for name in (*PACKAGES, "ccid.codec")}
    codec = modules["ccid.codec"].__file__ or ""
    if not codec.endswith(".so"):
        return (
            f"ccid.codec is {codec}, not a compiled module: install the wheel "
            "scripts/build-compiled makes into this interpreter's environment"
        )
    for name in PACKAGES:
        where = Path(modules[name].__file__ or "").resolve()
        if where.is_relative_to(CHECKOUT / name):
            return f"{name} is imported from the checkout ({where}), not from the installed build"
    return None


def build_compiled(venv: Path) -> Path:
    """``scripts/build-compiled``'s wheel installed into ``venv`` (made when missing, with
    uvloop when this interpreter has it): its interpreter."""
    with tempfile.TemporaryDirectory(prefix="compiled-wheel-") as out:
        print("building the compiled wheel (scripts/build-compiled)...", flush=True)
        subprocess.run(
            [str(CHECKOUT / "scripts" / "build-compiled"), "--out", out],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        (wheel,) = Path(out).glob("vscard-*.whl")
        if not (venv / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # Its dependencies first, then this very wheel over any older one of the same version.
        subprocess.run([*pip, str(wheel), *(["uvloop"] if uvloop_available() else [])], check=True)
        subprocess.run([*pip, "--force-reinstall", "--no-deps", str(wheel)], check=True)
    return python


def run_everything(
    quick: bool, cpu: int | None, compiled: CompiledBuild | None = None
) -> list[Section]:
    loops: list[LoopName] = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    seconds = 0.3 if quick else 1.0

    def dual(kind: Dual, loop: LoopName, build: str) -> Section:
        def one() -> Section:
            if compiled is None:
                return measure_dual(kind, loop, quick)
            if build == COMPILED:
                return labelled(compiled.measure(kind, loop, quick), build)
            return labelled(measure_dual(kind, loop, quick), build)

        return one() if kind in ("codec", "scale") else pinned(cpu, one)

    builds = [PURE] if compiled is None else [PURE, COMPILED]
    steps: list[tuple[str, Callable[[], Section]]] = [
        (f"{kind} {b}" if compiled else kind, functools.partial(dual, kind, "asyncio", b))
        for kind in LOOPLESS
        for b in builds
    ]
    steps.insert(len(builds), ("rsa", lambda: pinned(cpu, lambda: run_rsa(seconds))))
    count = 800 if quick else 4000

    def usbip(loop: LoopName) -> Section:
        return pinned(cpu, lambda: run_usbip(count, 4, loop))

    def storm(loop: LoopName) -> Section:
        return run_storm(200 if quick else 1000, loop)

    for loop in loops:
        steps.append((f"usbip {loop}", functools.partial(usbip, loop)))
    for kind in get_args(Dual):
        if kind in LOOPLESS:
            continue
        for loop in loops:
            for build in builds:
                name = f"{kind} {loop}" + (f" {build}" if compiled else "")
                steps.append((name, functools.partial(dual, kind, loop, build)))
    for loop in loops:
        steps.append((f"storm {loop}", functools.partial(storm, loop)))
    sections = []
    for name, step in steps:
        started = time.monotonic()
        print(f"{name}...", flush=True)
        sections.append(step())
        print(f"{name}: {time.monotonic() - started:.0f} s", flush=True)
    return sections


def guest_login(quick: bool) -> Section:
    """The guest-login benchmark (``--guest``): every path, loopback and WAN; ``--quick`` boots
    each once instead of three times."""
    started = time.monotonic()
    print("guest login (QEMU guests)...", flush=True)
    section = run_login(runs=1 if quick else 3)
    print(f"guest login: {time.monotonic() - started:.0f} s", flush=True)
    return section


def gain(figure: Figure, other: Figure) -> float:
    """How much better ``figure`` is than ``other`` (above 1: better)."""
    if figure.unit.endswith("/s"):
        return figure.value / other.value
    return other.value / figure.value


def loop_gain(sections: list[Section]) -> Section:
    """uvloop over asyncio for every network figure measured on both (and on the same build)."""
    result = Section("event loop", "uvloop against asyncio's own loop, same figure, same run")
    figures: dict[tuple[str, str | None, str], Figure] = {}
    for section in sections:
        for figure in section.figures:
            if figure.loop is not None:
                figures[(figure.name, figure.build, figure.loop)] = figure
    for (name, build, loop), figure in figures.items():
        other = figures.get((name, build, "asyncio"))
        if loop == "uvloop" and other is not None and "vs libcacard" not in name:
            # The chain's own figures appear once per baseline: keep one copy.
            name = name.replace(" vs floor", "")
            on = "" if build is None else f" ({build})"
            result.figures.append(
                Figure(f"uvloop gain: {name}{on}", gain(figure, other), "x",
                       note=f"asyncio {other.value:,.0f}, uvloop {figure.value:,.0f} "
                       f"{figure.unit}; above 1: uvloop is better", build=build)
            )  # fmt: skip
    return result


def build_gain(sections: list[Section]) -> Section:
    """The compiled build over pure Python for every figure measured on both, same loop."""
    result = Section("build", "the compiled build against pure Python, same figure, same run")
    figures: dict[tuple[str, str | None, str | None], Figure] = {}
    for section in sections:
        for figure in section.figures:
            if figure.build is not None:
                figures[(figure.name, figure.loop, figure.build)] = figure
    for (name, loop, build), figure in figures.items():
        other = figures.get((name, loop, PURE))
        if build == COMPILED and other is not None and "vs libcacard" not in name:
            name = name.replace(" vs floor", "")
            on = "" if loop is None else f" ({loop})"
            result.figures.append(
                Figure(f"compiled gain: {name}{on}", gain(figure, other), "x",
                       note=f"pure Python {other.value:,.0f}, compiled {figure.value:,.0f} "
                       f"{figure.unit}; above 1: the compiled build is better", loop=loop)
            )  # fmt: skip
    return result


def verdicts(report: dict[str, Any]) -> list[str]:
    """Markdown: every target figure measured on both builds, one column per build and loop."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    columns: list[str] = []
    for section in report["sections"]:
        for f in section["figures"]:
            if f["build"] is None or f["target"] is None:
                continue
            column = f["build"] if f["loop"] is None else f"{f['build']}, {f['loop']}"
            if column not in columns:
                columns.append(column)
            rows.setdefault(f"{f['name']} ({f['target']['text']})", {})[column] = f
    if not rows:
        return []
    lines = [
        "## targets by build and loop",
        "",
        "Each target measured on both builds in this run: the ratio (or the value when the "
        "target is on the value), and whether it is met.",
        "",
        "| figure (target) | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, cells in rows.items():
        shown = []
        for column in columns:
            f = cells.get(column)
            if f is None:
                shown.append("")
                continue
            measured = f["ratio"] if f["target"]["on"] == "ratio" else f["value"]
            number = "-" if measured is None else f"{measured:,.2f}"
            shown.append(f"{number} {'yes' if f['met'] else '**no**'}")
        lines.append(f"| {name} | " + " | ".join(shown) + " |")
    return [*lines, ""]


#: What to install for report.png.
PLOT_NEEDS = "matplotlib: pip install -e '.[bench]'"


def can_plot() -> bool:
    """Whether matplotlib imports: asked before minutes of benchmarks, not after them."""
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        return False
    return True


def markdown(report: dict[str, Any], plotted: bool) -> str:
    machine = report["machine"]
    lines = [
        "# vscard benchmark report",
        "",
        f"- command: `{report['command']}`",
        f"- machine: {machine['cpu_model']}, {machine['cores']} cores, "
        f"Python {machine['python']}, Linux {machine['kernel']}, uvloop {machine['uvloop']}",
        f"- date: {machine['date']}; load average at start {machine['load_average']}",
        "",
    ]
    for section in report["sections"]:
        lines += [f"## {section['name']}", "", section["description"], ""]
        lines += [
            "| figure | value | baseline | ratio | target | met |",
            "|---|---|---|---|---|---|",
        ]
        for f in section["figures"]:
            ratio = "" if f["ratio"] is None else f"{f['ratio']:.2f}"
            baseline = (
                "" if f["baseline"] is None else f"{f['baseline']:,.1f} ({f['baseline_name']})"
            )
            target = "" if f["target"] is None else f["target"]["text"]
            met = {None: "", True: "yes", False: "**no**"}[f["met"]]
            if f["met"] is not None and f["margin"] is not None:
                met += f" ({f['margin']:+.0%})"
            value = f"{f['value']:,.1f} {f['unit']}"
            if f["note"]:
                value += f" ({f['note']})"
            lines.append(f"| {f['name']} | {value} | {baseline} | {ratio} | {target} | {met} |")
        lines += [f"- {note}" for note in section["notes"]]
        lines.append("")
    lines += verdicts(report)
    if plotted:
        lines += ["![scale and chain](report.png)", ""]
    else:
        lines += [f"No plot: this run had no matplotlib ({PLOT_NEEDS}).", ""]
    return "\n".join(lines)


def plot(sections: list[Section], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logins = [section for section in sections if section.name == "guest login"]
    logins = [section for section in logins if section.series]
    # Only a run of both builds has codec sections with a build in their names.
    codecs = [section for section in sections if section.name.startswith("codec (")]
    extra = len(logins) + bool(codecs)
    figure, axes = plt.subplots(1, 3 + extra, figsize=(16 + 6 * extra, 4.8))
    rss, rate, chain = axes[:3]
    if logins:
        plot_logins(axes[3], logins[0])
    if codecs:
        plot_codecs(axes[-1], codecs)
    for section in sections:
        if section.name.startswith("scale"):
            points = section.series["points"]
            readers = [p["readers"] for p in points]
            label = section.name.removeprefix("scale ").strip("()")
            rss.plot(readers, [p["rss_per_reader_kib"] for p in points], "o-", label=label)
            rate.plot(readers, [p["rate"] for p in points], "o-", label=f"{label} APDU/s")
    rss.axhline(64, color="red", linestyle="--", label="target 64 KiB")
    rss.set(xscale="log", xlabel="readers", ylabel="KiB per reader", title="ccid-passthru RSS")
    rate.axhline(20_000, color="red", linestyle="--", label="target 20,000/s")
    rate.set(xscale="log", xlabel="readers", ylabel="APDU/s", title="aggregate APDU/s")
    names: list[str] = []
    p50: list[float] = []
    p99: list[float] = []
    for section in sections:
        if section.name.startswith("chain"):
            loop = section.name.removeprefix("chain ").strip("()")
            for path_name, row in section.series.items():
                names.append(f"{path_name}\n{loop}")
                p50.append(row["p50_us"])
                p99.append(row["p99_us"])
    positions = range(len(names))
    chain.bar([x - 0.2 for x in positions], p50, 0.4, label="p50")
    chain.bar([x + 0.2 for x in positions], p99, 0.4, label="p99")
    if len(names) > 6:  # both builds: twelve bars, labels on their side
        chain.set_xticks(list(positions), [n.replace("\n", " ") for n in names], fontsize=7,
                         rotation=90)  # fmt: skip
    else:
        chain.set_xticks(list(positions), names, fontsize=8)
    chain.set(ylabel="us", yscale="log", title="whole-chain APDU round trip")
    for axis in axes:
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_codecs(axis: Any, sections: list[Section]) -> None:
    """Each codec row's ratio to its struct floor, one bar per build."""
    names = list(dict.fromkeys(f.name for section in sections for f in section.figures))
    width = 0.8 / len(sections)
    for index, section in enumerate(sections):
        ratios = {f.name: f.ratio or 0.0 for f in section.figures}
        offset = (index - (len(sections) - 1) / 2) * width
        axis.barh([y + offset for y in range(len(names))], [ratios.get(n, 0) for n in names],
                  width, label=section.name.removeprefix("codec ").strip("()"))  # fmt: skip
    axis.axvline(0.5, color="red", linestyle="--", label="target 0.5x")
    axis.set_yticks(list(range(len(names))), names, fontsize=7)
    axis.set(xlabel="x the struct floor", title="codecs by build")


def plot_logins(axis: Any, section: Section) -> None:
    """Median guest-login time per path, loopback and WAN side by side, min-max as error bars."""
    rows = section.series
    paths = list(dict.fromkeys(str(row["path"]) for row in rows.values()))
    for offset, mode in ((-0.2, "loopback"), (0.2, "wan")):
        xs, medians, low, high = [], [], [], []
        for index, path in enumerate(paths):
            row = rows.get(f"{mode} {path}")
            if row is None:
                continue
            xs.append(index + offset)
            medians.append(row["median_s"])
            low.append(row["median_s"] - min(row["seconds"]))
            high.append(max(row["seconds"]) - row["median_s"])
        axis.bar(xs, medians, 0.4, yerr=[low, high], capsize=3, label=mode)
    axis.set_xticks(list(range(len(paths))), paths, fontsize=8)
    axis.set(ylabel="s in the guest", title="guest login (OpenSC list, PIN, sign)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, up to 100 readers")
    parser.add_argument("--out", type=Path, default=Path("benchmark-report"))
    parser.add_argument("--cpu", type=int, default=1, help="CPU for pinned comparisons")
    parser.add_argument(
        "--guest",
        action="store_true",
        help="also time a smart-card login in QEMU Linux guests through four reader paths, on "
        "loopback and over a 25 ms delay (benchmarks/bench_login.py): it boots about 40 VMs, "
        "about 15 minutes (13 boots with --quick), and needs QEMU, certutil and libcacard's "
        "vscclient build tools",
    )
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="also run the codec, card, PIV, chain and scale benchmarks on the compiled build: "
        "a wheel from scripts/build-compiled (built now: a few minutes) installed into "
        "--compiled-venv",
    )
    parser.add_argument(
        "--compiled-venv",
        type=Path,
        default=CHECKOUT / ".cache" / "compiled" / "venv",
        help="the venv for --compiled (made when missing; default: %(default)s)",
    )
    parser.add_argument(
        "--compiled-python",
        type=Path,
        help="like --compiled, with this interpreter, which has the compiled wheel installed "
        "already (nothing is built)",
    )
    parser.add_argument("--check-compiled", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=get_args(Dual), help=argparse.SUPPRESS)
    parser.add_argument("--child-loop", choices=get_args(LoopName), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.check_compiled or args.child is not None:
        child(args)
        return
    compiled = None
    if args.compiled or args.compiled_python is not None:
        python = args.compiled_python or build_compiled(args.compiled_venv)
        compiled = CompiledBuild.prepare(python, CHECKOUT / ".cache" / "compiled" / "path")
    plotted = can_plot()
    if not plotted:
        print(f"no report.png from this run: it needs {PLOT_NEEDS}", flush=True)
    machine = machine_info()
    started = time.monotonic()
    if compiled is None:
        sections = run_everything(args.quick, args.cpu)
    else:
        sections = run_everything(args.quick, args.cpu, compiled)
        machine["compiled_python"] = str(compiled.python)
    sections.append(loop_gain(sections))
    if compiled is not None:
        sections.append(build_gain(sections))
    if args.guest:
        sections.append(guest_login(args.quick))
    figures = [f for s in sections for f in s.figures if f.target is not None]
    report = {
        "command": "python -m benchmarks.run_all"
        + (" --quick" if args.quick else "")
        + (" --guest" if args.guest else "")
        + (" --compiled" if compiled is not None else ""),
        "machine": machine,
        "seconds": round(time.monotonic() - started),
        "targets": {
            "met": sum(1 for f in figures if f.met),
            "not_met": sum(1 for f in figures if not f.met),
        },
        "sections": [section.as_json() for section in sections],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "report.md").write_text(markdown(report, plotted))
    picture = args.out / "report.png"
    if plotted:
        plot(sections, picture)
        print(f"{report['targets']}; wrote {args.out}/report.json, report.md, report.png")
    else:
        picture.unlink(missing_ok=True)  # an older run's plot would not show these figures
        print(
            f"{report['targets']}; wrote {args.out}/report.json, report.md "
            f"(no report.png: it needs {PLOT_NEEDS})"
        )


def child(args: argparse.Namespace) -> None:
    """The compiled side: check that this process runs the compiled build (``--check-compiled``)
    or measure one benchmark and write its section as JSON to ``--child-out``."""
    problem = not_compiled()
    if problem is not None:
        raise SystemExit(problem)
    if args.child is None:
        return
    section = measure_dual(args.child, args.child_loop or "asyncio", args.quick)
    args.child_out.write_text(json.dumps(section.as_json()))


if __name__ == "__main__":
    main()
