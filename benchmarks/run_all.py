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

Run: ``python -m benchmarks.run_all [--quick] [--guest] [--out DIR]`` (default
``benchmark-report/``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def run_everything(quick: bool, cpu: int | None) -> list[Section]:
    loops: list[LoopName] = ["asyncio", "uvloop"] if uvloop_available() else ["asyncio"]
    seconds = 0.3 if quick else 1.0
    steps: list[tuple[str, Callable[[], Section]]] = [
        ("codec", lambda: run_codec(seconds / 2)),
        ("rsa", lambda: pinned(cpu, lambda: run_rsa(seconds))),
        ("card", lambda: pinned(cpu, lambda: run_card(seconds))),
        ("piv", lambda: pinned(cpu, lambda: run_piv(seconds))),
    ]
    count = 800 if quick else 4000

    def usbip(loop: LoopName) -> Section:
        return pinned(cpu, lambda: run_usbip(count, 4, loop))

    def chain(loop: LoopName) -> Section:
        return pinned(cpu, lambda: run_chain(count, 8, loop))

    def scale(loop: LoopName) -> Section:
        return run_scale((1, 10, 100) if quick else (1, 10, 100, 1000), 2 if quick else 5, loop)

    def storm(loop: LoopName) -> Section:
        return run_storm(200 if quick else 1000, loop)

    for measure in (usbip, chain, scale, storm):
        for loop in loops:
            steps.append((f"{measure.__name__} {loop}", functools.partial(measure, loop)))
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


def loop_gain(sections: list[Section]) -> Section:
    """uvloop over asyncio for every network figure measured on both."""
    result = Section("event loop", "uvloop against asyncio's own loop, same figure, same run")
    figures: dict[tuple[str, str], Figure] = {}
    for section in sections:
        for figure in section.figures:
            if figure.loop is not None:
                figures[(figure.name, figure.loop)] = figure
    for (name, loop), figure in figures.items():
        other = figures.get((name, "asyncio"))
        if loop == "uvloop" and other is not None and "vs libcacard" not in name:
            # The chain's own figures appear once per baseline: keep one copy.
            name = name.replace(" vs floor", "")
            higher_is_better = figure.unit.endswith("/s")
            gain = figure.value / other.value if higher_is_better else other.value / figure.value
            result.figures.append(
                Figure(f"uvloop gain: {name}", gain, "x",
                       note=f"asyncio {other.value:,.0f}, uvloop {figure.value:,.0f} "
                       f"{figure.unit}; above 1: uvloop is better")
            )  # fmt: skip
    return result


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
    figure, axes = plt.subplots(1, 3 + len(logins), figsize=(16 + 6 * len(logins), 4.8))
    rss, rate, chain = axes[:3]
    if logins:
        plot_logins(axes[3], logins[0])
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
    chain.set_xticks(list(positions), names, fontsize=8)
    chain.set(ylabel="us", yscale="log", title="whole-chain APDU round trip")
    for axis in axes:
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    args = parser.parse_args()
    plotted = can_plot()
    if not plotted:
        print(f"no report.png from this run: it needs {PLOT_NEEDS}", flush=True)
    machine = machine_info()
    started = time.monotonic()
    sections = run_everything(args.quick, args.cpu)
    sections.append(loop_gain(sections))
    if args.guest:
        sections.append(guest_login(args.quick))
    figures = [f for s in sections for f in s.figures if f.target is not None]
    report = {
        "command": "python -m benchmarks.run_all"
        + (" --quick" if args.quick else "")
        + (" --guest" if args.guest else ""),
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


if __name__ == "__main__":
    main()
