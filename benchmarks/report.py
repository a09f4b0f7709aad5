"""Benchmark results as data: a figure beside its baseline, its target, the machine it ran on.

Every benchmark module has a function returning a :class:`Section`; ``run_all`` gathers them
into ``report.json`` and ``report.md``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal


@dataclass(frozen=True)
class Target:
    """``ratio >= value`` (``at_least``) or ``ratio <= value`` (``at_most``); ``on`` says
    whether the ratio or the raw value is compared."""

    kind: Literal["at_least", "at_most"]
    value: float
    on: Literal["ratio", "value"] = "ratio"

    def met(self, figure: Figure) -> bool:
        measured = figure.ratio if self.on == "ratio" else figure.value
        if measured is None:
            return False
        return measured >= self.value if self.kind == "at_least" else measured <= self.value

    def describe(self) -> str:
        sign = ">=" if self.kind == "at_least" else "<="
        return f"{self.on} {sign} {self.value:g}"


@dataclass(frozen=True)
class Figure:
    """One measured number, with the baseline measured beside it in the same run."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str | None = None
    target: Target | None = None
    loop: str | None = None
    note: str | None = None
    #: Which build measured it ("pure Python" or "compiled") when a run measures both.
    build: str | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self)

    @property
    def margin(self) -> float | None:
        """How far from the target, as a fraction of it: positive means met with room."""
        if self.target is None:
            return None
        measured = self.ratio if self.target.on == "ratio" else self.value
        if measured is None or not self.target.value:
            return None  # a target of zero ("no retransmissions") has no fractional margin
        if self.target.kind == "at_least":
            return measured / self.target.value - 1
        return 1 - measured / self.target.value

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ratio"] = self.ratio
        data["met"] = self.met
        data["margin"] = self.margin
        if self.target is not None:
            data["target"]["text"] = self.target.describe()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figure:
        """The figure :meth:`as_json` wrote (another process measured it)."""
        target = data["target"]
        return cls(
            name=data["name"],
            value=data["value"],
            unit=data["unit"],
            baseline=data["baseline"],
            baseline_name=data["baseline_name"],
            target=None
            if target is None
            else Target(target["kind"], target["value"], target["on"]),
            loop=data["loop"],
            note=data["note"],
            build=data.get("build"),
        )


@dataclass
class Section:
    """One benchmark's figures, plus anything it wants to plot or say."""

    name: str
    description: str
    figures: list[Figure] = field(default_factory=list)
    series: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "figures": [figure.as_json() for figure in self.figures],
            "series": self.series,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Section:
        """The section :meth:`as_json` wrote (another process measured it)."""
        return cls(
            data["name"],
            data["description"],
            [Figure.from_json(figure) for figure in data["figures"]],
            data["series"],
            data["notes"],
        )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    try:
        uvloop_version: str | None = importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        uvloop_version = None
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "system": platform.system(),
        "machine": platform.machine(),
        "uvloop": uvloop_version,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": list(os.getloadavg()),
    }
