"""What one guest run reported: a verdict per check, its output, timings and the console."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    output: str
    guest_seconds: float


@dataclass(frozen=True)
class GuestResult:
    """Everything one guest run reported. ``passed`` only if every check ran and passed."""

    setup: str
    expected: tuple[str, ...]
    """Names of all checks the script was to run (setup steps first)."""
    checks: tuple[CheckResult, ...]
    """Checks that reported, in order."""
    logs: tuple[tuple[str, str], ...]
    completed: bool
    """The guest's script reached its end."""
    timed_out: bool
    returncode: int | None
    seconds: float
    """Host wall time from starting the guest until QEMU exited."""
    boot_seconds: float | None
    """Host wall time until the guest's script began."""
    console: str
    stderr: str
    host_errors: tuple[str, ...]

    def get(self, name: str) -> CheckResult | None:
        return next((check for check in self.checks if check.name == name), None)

    def __getitem__(self, name: str) -> CheckResult:
        check = self.get(name)
        if check is None:
            raise KeyError(f"check {name} did not report; {self.summary()}")
        return check

    def verdict(self, name: str) -> Literal["PASS", "FAIL", "MISSING"]:
        check = self.get(name)
        if check is None:
            return "MISSING"
        return "PASS" if check.passed else "FAIL"

    @property
    def passed(self) -> bool:
        return (
            self.completed
            and not self.timed_out
            and not self.host_errors
            and all(self.verdict(name) == "PASS" for name in self.expected)
        )

    def summary(self) -> str:
        """One line per check, with the run's timing."""
        lines = [
            f"guest run ({self.setup}): {'passed' if self.passed else 'FAILED'} in "
            f"{self.seconds:.1f} s (script began at {_seconds(self.boot_seconds)})"
            + (" TIMED OUT" if self.timed_out else "")
        ]
        for name in self.expected:
            check = self.get(name)
            timing = f" {check.guest_seconds:5.2f} s" if check else ""
            lines.append(f"  {self.verdict(name):7} {name}{timing}")
        lines.extend(f"  host error: {error}" for error in self.host_errors)
        return "\n".join(lines)

    def report(self, *, all_outputs: bool = False, console_tail: int = 60) -> str:
        """The summary, the output of every failed check, the logs, and the console's end."""
        parts = [self.summary()]
        for check in self.checks:
            if all_outputs or not check.passed:
                parts.append(f"--- {check.name} output ---\n{check.output.rstrip()}")
        for name, text in self.logs:
            parts.append(f"--- log {name} (last 80 lines) ---\n" + _tail(text, 80))
        if not self.completed or self.timed_out:
            parts.append(
                f"--- console (last {console_tail} lines) ---\n" + _tail(self.console, console_tail)
            )
            if self.stderr.strip():
                parts.append(f"--- qemu stderr ---\n{self.stderr.rstrip()}")
        return "\n".join(parts)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.replace("\r", "").rstrip().splitlines()[-lines:])
