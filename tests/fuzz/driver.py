"""The built-in fuzz driver: seeded, mutational, dependency-free, deterministic for a seed.

It starts from the committed corpus of valid inputs and stacks byte-level mutations on them
(bit flips, interesting 8/16/32-bit values at any offset and at word boundaries, length
arithmetic, inserts, deletions, duplications, splices and crossovers between seeds), with a
few purely random inputs. It has no coverage feedback: atheris (see ``__main__``) is the
coverage-guided engine; this one makes CI independent of it and reproducible.

Each input runs under a per-input alarm (a hang is a crash), resident memory is sampled as
the run goes (over ``rss_limit_mb`` is a crash), and every distinct crash is kept with a
minimized input.
"""

from __future__ import annotations

import hashlib
import random
import resource
import signal
import time
import traceback
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .targets import FuzzOne

_INTERESTING_8: Final = (0x00, 0x01, 0x02, 0x0F, 0x10, 0x3B, 0x3F, 0x7F, 0x80, 0xFE, 0xFF)
_INTERESTING_16: Final = (0, 1, 0x00FF, 0x0100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF)
_INTERESTING_32: Final = (
    0,
    1,
    2,
    4,
    8,
    12,
    0x7F,
    0xFF,
    0x100,
    0xFFFF,
    0x10000,
    0x10001,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
_PAGE_SIZE: Final = resource.getpagesize()
_MEMORY_CHECK_EVERY: Final = 512
_MAX_DISTINCT_CRASHES: Final = 16
_MINIMIZE_BUDGET: Final = 2000


class Hang(BaseException):
    """The per-input alarm went off (a BaseException so no harness can swallow it)."""


@dataclass(slots=True)
class Crash:
    """A bug: ``kind`` is crash, hang or memory."""

    kind: str
    summary: str
    traceback: str
    input: bytes
    count: int = 1
    artifact: Path | None = None


@dataclass(slots=True)
class Result:
    """What one target's run did."""

    target: str
    engine: str
    inputs: int
    seconds: float
    peak_rss_mb: float
    slowest_input_ms: float = 0.0
    rss_after_warmup_mb: float = 0.0
    crashes: list[Crash] = field(default_factory=list)
    slowest_input: bytes = b""

    @property
    def exec_per_sec(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    @property
    def crash_count(self) -> int:
        return sum(crash.count for crash in self.crashes)


def current_rss_mb() -> float:
    """Resident memory now (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE / 2**20
    except OSError:
        return 0.0


def peak_rss_mb() -> float:
    """The process's peak resident memory so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Mutator:
    """Generates inputs from ``corpus`` with a private, seeded random generator."""

    def __init__(self, corpus: Sequence[bytes], max_len: int, seed: int) -> None:
        self._corpus = [bytes(item) for item in corpus] or [b""]
        self._max_len = max_len
        self._rng = random.Random(seed)
        self._operators: list[Callable[[bytearray], None]] = [
            self._flip_bit,
            self._random_byte,
            self._interesting_8,
            self._interesting_16,
            self._interesting_32,
            self._interesting_32,  # lengths and types are 32-bit words: weigh them double
            self._arithmetic,
            self._insert,
            self._delete,
            self._duplicate,
            self._fill,
            self._splice,
            self._truncate,
            self._control,
        ]

    def next_input(self) -> bytes:
        rng = self._rng
        if rng.random() < 0.03:
            return rng.randbytes(min(self._max_len, int(rng.expovariate(1 / 64))))
        data = bytearray(rng.choice(self._corpus))
        if rng.random() < 0.1:
            self._crossover(data)
        for _ in range(1 + min(7, int(rng.expovariate(0.6)))):
            rng.choice(self._operators)(data)
        return bytes(data[: self._max_len])

    # -- operators ------------------------------------------------------------------------

    def _offset(self, data: bytearray, width: int = 1) -> int:
        """A random offset where ``width`` bytes fit; often word-aligned."""
        top = max(0, len(data) - width)
        offset = self._rng.randint(0, top)
        if self._rng.random() < 0.5:
            # Most headers follow a control byte: align to 1 + 4k.
            offset = min(top, 1 + (offset // 4) * 4)
        return offset

    def _flip_bit(self, data: bytearray) -> None:
        if data:
            data[self._offset(data)] ^= 1 << self._rng.randrange(8)

    def _random_byte(self, data: bytearray) -> None:
        if data:
            data[self._offset(data)] = self._rng.randrange(256)

    def _interesting_8(self, data: bytearray) -> None:
        if data:
            data[self._offset(data)] = self._rng.choice(_INTERESTING_8)

    def _write(self, data: bytearray, value: int, width: int) -> None:
        if len(data) < width:
            data.extend(bytes(width - len(data)))
        offset = self._offset(data, width)
        value %= 1 << (8 * width)
        big = self._rng.random() < 0.6
        data[offset : offset + width] = value.to_bytes(width, "big" if big else "little")

    def _interesting_16(self, data: bytearray) -> None:
        self._write(data, self._rng.choice(_INTERESTING_16), 2)

    def _interesting_32(self, data: bytearray) -> None:
        value = self._rng.choice(_INTERESTING_32)
        if self._rng.random() < 0.3:
            value = len(data) + self._rng.randint(-16, 16)  # a length near the input's own
        self._write(data, value, 4)

    def _arithmetic(self, data: bytearray) -> None:
        width = self._rng.choice((1, 2, 4))
        if len(data) < width:
            return
        offset = self._offset(data, width)
        value = int.from_bytes(data[offset : offset + width], "big")
        value += self._rng.choice((-1, 1)) * self._rng.randint(1, 16)
        self._write_at(data, offset, value, width)

    @staticmethod
    def _write_at(data: bytearray, offset: int, value: int, width: int) -> None:
        data[offset : offset + width] = (value % (1 << (8 * width))).to_bytes(width, "big")

    def _insert(self, data: bytearray) -> None:
        offset = self._rng.randint(0, len(data))
        data[offset:offset] = self._rng.randbytes(self._rng.randint(1, 16))

    def _delete(self, data: bytearray) -> None:
        if len(data) > 1:
            start = self._rng.randrange(len(data))
            del data[start : start + self._rng.randint(1, min(64, len(data) - start))]

    def _duplicate(self, data: bytearray) -> None:
        if data:
            start = self._rng.randrange(len(data))
            piece = data[start : start + self._rng.randint(1, 64)]
            at = self._rng.randint(0, len(data))
            data[at:at] = piece * self._rng.randint(1, 4)

    def _fill(self, data: bytearray) -> None:
        """Overwrite a run with one byte value: fills NUL-padded text fields to their end."""
        if data:
            start = self._offset(data)
            size = min(len(data) - start, self._rng.choice((4, 16, 32, 64, 256, 512)))
            data[start : start + size] = bytes((self._rng.randrange(1, 256),)) * size

    def _splice(self, data: bytearray) -> None:
        """Insert (often append) another seed's payload: several sessions in one stream."""
        other = self._rng.choice(self._corpus)[1:]
        at = len(data) if self._rng.random() < 0.5 else self._rng.randint(0, len(data))
        data[at:at] = other

    def _crossover(self, data: bytearray) -> None:
        other = self._rng.choice(self._corpus)
        cut = self._rng.randint(0, len(data))
        data[cut:] = other[self._rng.randint(0, len(other)) :]

    def _truncate(self, data: bytearray) -> None:
        if data:
            del data[self._rng.randint(0, len(data) - 1) :]

    def _control(self, data: bytearray) -> None:
        if data:
            data[0] = self._rng.randrange(256)


def _crash_key(error: BaseException) -> tuple[str, str]:
    frames = traceback.extract_tb(error.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    return type(error).__name__, where


def _alarm(signum: int, frame: types.FrameType | None) -> None:
    raise Hang


def run_one(fuzz_one: FuzzOne, data: bytes, timeout: float) -> BaseException | None:
    """Run one input under the alarm; return the exception it raised, if any."""
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        fuzz_one(data)
    except (Exception, Hang) as error:
        return error
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def minimize(fuzz_one: FuzzOne, data: bytes, key: tuple[str, str], timeout: float) -> bytes:
    """Greedily drop byte ranges while the input still fails the same way."""
    budget = _MINIMIZE_BUDGET
    size = max(1, len(data) // 2)
    while size >= 1 and budget > 0:
        offset = 1  # keep the control byte
        while offset < len(data) and budget > 0:
            candidate = data[:offset] + data[offset + size :]
            budget -= 1
            error = run_one(fuzz_one, candidate, timeout)
            if error is not None and _crash_key(error) == key:
                data = candidate
            else:
                offset += size
        size //= 2
    return data


def _describe(error: BaseException) -> tuple[str, str, str]:
    if isinstance(error, Hang):
        kind, summary = "hang", "input ran past the per-input time limit"
    else:
        kind, summary = "crash", f"{type(error).__name__}: {error}"
    text = "".join(traceback.format_exception(error))
    return kind, summary[:300], text


def fuzz(
    name: str,
    fuzz_one: FuzzOne,
    corpus: Sequence[bytes],
    *,
    max_len: int,
    runs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    timeout: float = 2.0,
    rss_limit_mb: float = 2048.0,
    artifacts: Path | None = None,
) -> Result:
    """Fuzz ``fuzz_one`` until ``runs`` inputs or ``seconds`` have passed (whichever first).

    The corpus runs first, unmutated. Needs the main thread (SIGALRM).
    """
    if runs is None and seconds is None:
        raise ValueError("give runs, seconds or both")
    mutator = Mutator(corpus, max_len, seed)
    crashes: dict[tuple[str, str], Crash] = {}
    limit = runs if runs is not None else -1
    deadline = time.monotonic() + seconds if seconds is not None else None
    previous = signal.signal(signal.SIGALRM, _alarm)
    count = 0
    slowest = 0.0
    slowest_input = b""
    warm_rss = 0.0
    start = time.perf_counter()
    try:
        pending = list(corpus)
        while count != limit:
            data = pending.pop(0) if pending else mutator.next_input()
            began = time.perf_counter()
            error = run_one(fuzz_one, data, timeout)
            took = time.perf_counter() - began
            if took > slowest:
                slowest, slowest_input = took, data
            count += 1
            if error is not None:
                key = _crash_key(error)
                if key in crashes:
                    crashes[key].count += 1
                elif len(crashes) < _MAX_DISTINCT_CRASHES:
                    small = minimize(fuzz_one, data, key, timeout)
                    kind, summary, text = _describe(error)
                    crash = Crash(kind, summary, text, small)
                    crash.artifact = _save(artifacts, name, crash)
                    crashes[key] = crash
            if count % _MEMORY_CHECK_EVERY == 0:
                rss = current_rss_mb()
                if count == 4 * _MEMORY_CHECK_EVERY:
                    warm_rss = rss
                if rss > rss_limit_mb:
                    crash = Crash("memory", f"RSS {rss:.0f} MB over {rss_limit_mb:.0f}", "", data)
                    crash.artifact = _save(artifacts, name, crash)
                    crashes[("memory", "")] = crash
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    elapsed = time.perf_counter() - start
    return Result(
        name,
        "builtin",
        count,
        elapsed,
        peak_rss_mb(),
        slowest_input_ms=slowest * 1000,
        rss_after_warmup_mb=warm_rss,
        crashes=list(crashes.values()),
        slowest_input=slowest_input,
    )


def _save(directory: Path | None, name: str, crash: Crash) -> Path | None:
    if directory is None:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(crash.input).hexdigest()[:16]
    path = directory / f"{crash.kind}-{name}-{digest}"
    path.write_bytes(crash.input)
    path.with_suffix(".txt").write_text(f"{crash.summary}\n\n{crash.traceback}")
    return path
