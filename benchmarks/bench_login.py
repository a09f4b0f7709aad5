"""What a user feels: a smart-card login timed inside a Linux guest (QEMU TCG), through four
reader paths in the same run, on loopback and over a WAN-like delay.

The login is OpenSC's: ``opensc-tool -a`` (ATR), ``opensc-tool -n`` (driver), ``pkcs15-tool
-D`` (the certificates and keys), ``pkcs11-tool --login -O`` (PIN, objects), and a logged-in
``pkcs11-tool --sign`` verified with openssl: the test rig's checks
(``tests/interop/guest/checks.py``). The time is the guest's own: the sum of those checks'
durations as the guest measures them (``/proc/uptime``, 10 ms steps), after an untimed check
that waits until the card answers. Booting is not counted.

The paths (each run boots a fresh guest; the paths alternate within a round so drift on a
shared machine hits them alike):

- **a** QEMU ``usb-ccid`` + ``ccid-card-passthru`` + libcacard's C ``vscclient`` serving a
  soft CAC card from an NSS database (the reference; built by ``tests/interop/libcacard``);
- **b** the same with our ``vscclient -e`` and the same NSS database (so the same CAC card);
  **b-card** with our default card directory (``cacard new``: CAC+PIV, ATR offering T=1);
- **c** our ``ccid-passthru`` over USB/IP with our ``vscclient -e`` (the same NSS card, T=0);
  **c-t1** with the default card directory (the reader runs T=1), **c-t0** with a ``--profile
  cac`` card directory (T=0 only);
- **d** QEMU's in-process ``ccid-card-emulated`` over the same NSS database (no network).

Over the WAN a :class:`~benchmarks.delay_proxy.DelayProxy` sits between ``vscclient`` and its
host (QEMU's chardev, or ``ccid-passthru``'s VSCard port) with ``--delay`` ms each way; path d
has no such link. The proxy also decodes the VSCard stream, so each WAN run counts the login's
APDUs, its GET RESPONSEs (INS C0) and the ``61xx`` answers that cost them.

Over the WAN a login takes about its loopback time plus one round trip per APDU; a run that
measured a over the WAN and c-t1 both ways says in its notes how many APDUs that model lets a
c-t1 login take within the target.

``--trace DIR`` writes each login's exchanges, one line each (the login step, the command and
the response in hex), to ``DIR/MODE-PATH-ROUND.txt``: what to read when asking where a
login's round trips go. (On loopback, tracing puts a proxy without delay in the link.)

Run: ``python -m benchmarks.bench_login [--runs 3] [--delay 25] [--paths a,c-t1] [--no-wan]
[--no-loopback] [--opensc-cache] [--trace DIR] [--json FILE]`` (about 20 s per loopback boot,
40 s per WAN boot; ``--opensc-cache`` turns on the guest OpenSC's file cache, a guest-side
lever).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from benchmarks.delay_proxy import DelayProxy, Direction
from benchmarks.report import Figure, Section, Target
from vscard import Decoder
from vscard.messages import APDU

if TYPE_CHECKING:
    from tests.interop.guest.checks import Check
    from tests.interop.guest.image import GuestImage
    from tests.interop.guest.runner import Guest, Setup

CardKind = Literal["nss", "default", "cac"]
Reader = Literal["qemu", "usbip", "emulated"]
Client = Literal["libcacard", "ours", "none"]
Mode = Literal["loopback", "wan"]

PIN = "77777777"
BUSID = "1-1"  # the first reader ccid-passthru exports
#: The issue's WAN target: a login through ccid-passthru over the delay takes at most this
#: fraction of the reference path's.
WAN_TARGET = 0.5
GUEST_TIMEOUT = 300.0


@dataclass(frozen=True)
class LoginPath:
    key: str
    label: str
    reader: Reader
    client: Client
    card: CardKind


PATHS: tuple[LoginPath, ...] = (
    LoginPath("a", "QEMU passthru + libcacard's vscclient (NSS DB)", "qemu", "libcacard", "nss"),
    LoginPath("b", "QEMU passthru + our vscclient -e (same NSS DB)", "qemu", "ours", "nss"),
    LoginPath("b-card", "QEMU passthru + our --card (cac+piv)", "qemu", "ours", "default"),
    LoginPath("c", "ccid-passthru + our vscclient -e (same NSS DB)", "usbip", "ours", "nss"),
    LoginPath("c-t1", "ccid-passthru + our --card (cac+piv, T=1)", "usbip", "ours", "default"),
    LoginPath("c-t0", "ccid-passthru + our --card (--profile cac, T=0)", "usbip", "ours", "cac"),
    LoginPath("d", "QEMU ccid-card-emulated (same NSS DB, in process)", "emulated", "none", "nss"),
)  # fmt: skip
PATH_KEYS = tuple(path.key for path in PATHS)
REFERENCE = "a"

#: The timed checks' names, in order (see :func:`login_checks`).
LOGIN_STEPS = ("atr", "card-driver", "pkcs15-objects", "pkcs11-objects", "sign")


@dataclass(frozen=True)
class TracedApdu:
    """One exchange of a traced login: the check it ran in, the command, its response."""

    step: str
    command: bytes
    response: bytes | None = None

    def line(self) -> str:
        response = "-" if self.response is None else self.response.hex()
        return f"{self.step} {self.command.hex()} {response}"


@dataclass
class ApduCount:
    """The VSCard APDU messages of one login, as the delay proxy saw them."""

    commands: int = 0
    get_responses: int = 0
    """Commands with INS C0."""
    more_data: int = 0
    """Responses with SW1 61: each makes the reader send a GET RESPONSE."""
    instructions: dict[int, int] = field(default_factory=dict)
    """Commands by INS."""
    counting: bool = False
    """Off until the login starts (the card's power-up and the wait are not counted)."""
    step: str = ""
    """The login check running now (kept up to date by :func:`login_once` when tracing)."""
    trace: list[TracedApdu] | None = None
    """With a list, every counted exchange is appended to it."""
    _decoders: dict[Direction, Decoder] = field(
        default_factory=lambda: {direction: Decoder() for direction in Direction}
    )

    def observe(self, direction: Direction, chunk: bytes) -> None:
        for message in self._decoders[direction].feed(chunk):
            if not self.counting or not isinstance(message, APDU) or len(message.data) < 2:
                continue
            # Downstream (host to vscclient) carries commands, upstream their responses.
            if direction is Direction.DOWNSTREAM:
                ins = message.data[1]
                self.commands += 1
                self.get_responses += ins == 0xC0
                self.instructions[ins] = self.instructions.get(ins, 0) + 1
                if self.trace is not None:
                    self.trace.append(TracedApdu(self.step, message.data))
            else:
                self.more_data += message.data[-2] == 0x61
                if self.trace and self.trace[-1].response is None:
                    last = self.trace[-1]
                    self.trace[-1] = TracedApdu(last.step, last.command, message.data)


@dataclass(frozen=True)
class LoginRun:
    path: str
    mode: Mode
    seconds: float
    """The login's duration in the guest (the timed checks' sum)."""
    steps: dict[str, float]
    apdus: ApduCount | None


@dataclass
class Cards:
    """The cards of one benchmark run, made once: the NSS DB and two card directories."""

    nssdb: Path
    directories: dict[CardKind, Path]

    @classmethod
    def make(cls, work: Path, kinds: set[CardKind]) -> Cards:
        from cacard import CardRequest, generate_card
        from cacard.profile import PIV_KEYS, Applications
        from tests.interop.guest.nssdb import make_nssdb

        nssdb = make_nssdb(work / "db").directory
        requests = {
            "default": CardRequest(applications=Applications.CAC_PIV, certificates=len(PIV_KEYS)),
            "cac": CardRequest(applications=Applications.CAC),
        }
        directories: dict[CardKind, Path] = {}
        for kind in kinds - {"nss"}:
            directories[kind] = work / kind
            generate_card(directories[kind], requests[kind])
        return cls(nssdb, directories)

    def vscclient_args(self, kind: CardKind) -> list[str]:
        from tests.interop.libcacard.vscclient import soft_card_args

        if kind == "nss":
            return ["-e", soft_card_args(self.nssdb)]
        return ["--card", str(self.directories[kind])]


#: ``--opensc-cache``: the guest's OpenSC keeps the card's files it read (certificates and the
#: like) and later processes read them from there, not from the card.
OPENSC_CACHE_CONF = """
mkdir -p /run/vscard/opensc-cache
cat >/etc/opensc/opensc.conf <<'CONF'
app default {
    file_cache_dir = /run/vscard/opensc-cache;
    framework pkcs15 {
        use_file_caching = yes;
    }
}
CONF
cat /etc/opensc/opensc.conf
"""


def login_checks(card: CardKind, *, opensc_cache: bool = False) -> list[Check]:
    """An untimed wait for the card, then the timed login (named as :data:`LOGIN_STEPS`);
    with ``opensc_cache``, OpenSC's file cache is turned on first."""
    from tests.interop.guest import checks
    from tests.interop.guest.checks import Check

    if card == "default":
        # OpenSC's PIV driver: four certificates, key ID 01 for 9A (OpenSC, pkcs15-piv.c).
        driver, objects, key_id = checks.PIV_DRIVER, 4, "01"
    else:
        driver, objects, key_id = checks.CAC_DRIVER, 3, "0001"
    sign = checks.sign_verify("SHA256-RSA-PKCS", key_id=key_id, pin=PIN)
    setup = [Check("login.opensc-cache", OPENSC_CACHE_CONF, fatal=True)] if opensc_cache else []
    return [
        *setup,
        checks.reader_listed(seconds=30),
        Check("login.ready", "vs_poll 30 opensc-tool -a"),
        checks.atr(),
        checks.card_driver(driver),
        checks.pkcs15_objects(objects, objects),
        checks.pkcs11_objects(objects, objects, pin=PIN),
        Check("sign", sign.body),
    ]


class LoginFailedError(RuntimeError):
    """A guest run did not pass; the message holds its report."""


@contextlib.asynccontextmanager
async def link(
    port: int, mode: Mode, delay: float, count: ApduCount
) -> AsyncIterator[tuple[str, int]]:
    """Where vscclient connects to reach ``port``: the port itself, or a delay proxy to it
    (one without delay on loopback when the login is traced)."""
    if mode == "loopback" and count.trace is None:
        yield "127.0.0.1", port
        return
    wait = delay if mode == "wan" else 0.0
    async with DelayProxy("127.0.0.1", port, wait, observe=count.observe) as proxy:
        yield "127.0.0.1", proxy.port


async def follow_steps(guest: Guest, count: ApduCount, names: Sequence[str]) -> None:
    """Keep ``count.step`` on the check running now: each check's exchanges happen before
    it reports, so the step moves on when the one before it has reported."""
    for name, after in zip(names, [*names[1:], "after"], strict=True):
        count.step = name
        if await guest.wait_for_check(name) is None:
            return
        count.step = after


@contextlib.asynccontextmanager
async def vscclient(
    path: LoginPath, cards: Cards, host: str, port: int, binary: Path | None
) -> AsyncIterator[None]:
    """The path's vscclient, connected to ``host:port`` until the block ends."""
    if path.client == "libcacard":
        from tests.interop.libcacard.vscclient import run_vscclient, soft_card_args

        assert binary is not None
        async with run_vscclient(binary, host, port, soft_card_args(cards.nssdb), debug=0):
            yield
    else:
        from tests.interop.our_vscclient import running_vscclient

        async with running_vscclient([*cards.vscclient_args(path.card), host, str(port)]) as c:
            await c.event("vscclient.connected")
            yield


async def login_once(
    image: GuestImage,
    path: LoginPath,
    mode: Mode,
    cards: Cards,
    delay: float,
    binary: Path | None,
    *,
    opensc_cache: bool = False,
    trace: bool = False,
) -> LoginRun:
    """Boot a guest on ``path``, log in once, return the guest's timings (and with ``trace``
    every APDU of the login, by step)."""
    from tests.daemons.passthru_process import running_passthru
    from tests.interop.guest.runner import EmulatedSetup, PassthruSetup, UsbipSetup, start_guest

    count = ApduCount(trace=[] if trace else None)
    checks = login_checks(path.card, opensc_cache=opensc_cache)
    async with contextlib.AsyncExitStack() as stack:
        setup: Setup
        if path.reader == "usbip":
            passthru = await stack.enter_async_context(running_passthru(capture_log=True))
            host, port = await stack.enter_async_context(
                link(passthru.vscard_port, mode, delay, count)
            )
            await stack.enter_async_context(vscclient(path, cards, host, port, binary))
            await asyncio.wait_for(passthru.log_event("passthru.card_inserted"), 60)
            setup = UsbipSetup(passthru.usbip_port, BUSID)
        elif path.reader == "emulated":
            setup = EmulatedSetup(cards.nssdb)
        else:
            setup = PassthruSetup()
        guest = await stack.enter_async_context(
            start_guest(image, setup, checks, timeout=GUEST_TIMEOUT)
        )
        if path.reader == "qemu":
            assert guest.passthru_port is not None
            host, port = await stack.enter_async_context(
                link(guest.passthru_port, mode, delay, count)
            )
            await stack.enter_async_context(vscclient(path, cards, host, port, binary))
        if await guest.wait_for_check("login.ready") is not None:
            count.counting = True
        names = [check.name for check in checks[-len(LOGIN_STEPS) :]]
        follower = asyncio.create_task(follow_steps(guest, count, names))
        try:
            result = await guest.wait()
        finally:
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    if not result.passed:
        raise LoginFailedError(f"path {path.key} ({mode}):\n{result.report()}")
    steps = {step: result[check.name].guest_seconds for step, check in zip(
        LOGIN_STEPS, checks[-len(LOGIN_STEPS):], strict=True)}  # fmt: skip
    counted = count if mode == "wan" or trace else None
    return LoginRun(path.key, mode, sum(steps.values()), steps, counted)


def missing_prerequisites(paths: Sequence[LoginPath]) -> list[str]:
    """What this host lacks for ``paths`` (empty: all is there)."""
    from tests.interop.guest.runner import QEMU
    from tests.interop.libcacard.vscclient import missing_host_prerequisites

    missing = [] if shutil.which(QEMU) else [QEMU]
    if shutil.which("certutil") is None:
        missing.append("certutil (libnss3-tools)")
    if any(path.client == "libcacard" for path in paths):
        missing += missing_host_prerequisites()
    return missing


async def measure(
    paths: Sequence[LoginPath],
    modes: Sequence[Mode],
    runs: int,
    delay: float,
    failures: list[str],
    *,
    progress: bool = False,
    opensc_cache: bool = False,
    traces: Path | None = None,
) -> list[LoginRun]:
    """Every path ``runs`` times in each mode, alternating paths within each round; a run
    that fails is named in ``failures`` and the others go on. With ``traces``, each run's
    APDUs go to ``MODE-PATH-ROUND.txt`` there (see :func:`write_trace`)."""
    from tests.interop.guest.image import build_image
    from tests.interop.libcacard.vscclient import build_vscclient

    image = await asyncio.to_thread(build_image)
    needs_binary = any(path.client == "libcacard" for path in paths)
    binary = await asyncio.to_thread(build_vscclient) if needs_binary else None
    results = []
    with tempfile.TemporaryDirectory(prefix="vsc-") as work:  # short: QEMU's option buffer
        cards = await asyncio.to_thread(Cards.make, Path(work), {p.card for p in paths})
        for mode in modes:
            chosen = [p for p in paths if mode == "loopback" or p.client != "none"]
            for round_number in range(runs):
                for path in chosen:
                    try:
                        run = await login_once(
                            image,
                            path,
                            mode,
                            cards,
                            delay,
                            binary,
                            opensc_cache=opensc_cache,
                            trace=traces is not None,
                        )
                    except LoginFailedError as error:  # reported; the other paths go on
                        failures.append(f"{mode} {path.key} round {round_number + 1}")
                        if progress:
                            say(str(error))
                        continue
                    if traces is not None and run.apdus is not None:
                        name = f"{mode}-{path.key}-{round_number + 1}.txt"
                        write_trace(traces / name, run.apdus)
                    if progress:
                        apdus = "" if run.apdus is None else f", {run.apdus.commands} APDUs"
                        say(f"{mode} round {round_number + 1}: {path.key} {run.seconds:.2f} s"
                            f"{apdus}")  # fmt: skip
                    results.append(run)
    return results


def write_trace(file: Path, count: ApduCount) -> None:
    """One line per exchange: the step, the command and the response in hex."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("".join(f"{entry.line()}\n" for entry in count.trace or ()))


def say(message: str) -> None:
    print(message, flush=True)  # progress of a long run


def section(
    runs: Sequence[LoginRun],
    delay: float,
    load: tuple[float, float],
    failures: Sequence[str] = (),
) -> Section:
    result = Section(
        "guest login",
        "a smart-card login in a QEMU TCG Linux guest (OpenSC: ATR, driver, pkcs15-tool -D, "
        "pkcs11-tool --login -O, sign), timed in the guest, per reader path; "
        f"WAN: {delay * 1000:g} ms each way between vscclient and its host",
    )
    labels = {path.key: path.label for path in PATHS}
    series: dict[str, dict[str, object]] = {}
    for mode in ("loopback", "wan"):
        by_path: dict[str, list[LoginRun]] = {}
        for run in runs:
            if run.mode == mode:
                by_path.setdefault(run.path, []).append(run)
        if not by_path:
            continue
        reference = by_path.get(REFERENCE)
        baseline = statistics.median(r.seconds for r in reference) if reference else None
        for key, path_runs in by_path.items():
            seconds = sorted(r.seconds for r in path_runs)
            median = statistics.median(seconds)
            target = None
            if mode == "wan" and key.startswith("c") and baseline is not None:
                target = Target("at_most", WAN_TARGET)
            apdus = [r.apdus for r in path_runs if r.apdus is not None]
            note = f"{len(seconds)} runs, {seconds[0]:.2f}-{seconds[-1]:.2f} s"
            if apdus:
                note += f"; {apdus[0].commands} APDUs, {apdus[0].get_responses} GET RESPONSE"
            result.figures.append(
                Figure(
                    f"login {mode} {key}: {labels[key]}",
                    median,
                    "s",
                    None if key == REFERENCE else baseline,
                    None if key == REFERENCE else f"{REFERENCE} ({mode})",
                    target,
                    note=note,
                )
            )
            steps = {s: statistics.median(r.steps[s] for r in path_runs) for s in LOGIN_STEPS}
            series[f"{mode} {key}"] = {
                "path": key,
                "mode": mode,
                "label": labels[key],
                "seconds": seconds,
                "median_s": median,
                "ratio_to_a": None if baseline is None else median / baseline,
                "steps_median_s": steps,
                "apdus": [
                    {
                        "commands": a.commands,
                        "get_responses": a.get_responses,
                        "more_data": a.more_data,
                        "by_ins": {f"{ins:02X}": n for ins, n in sorted(a.instructions.items())},
                    }
                    for a in apdus
                ],
            }
    result.series = series
    if (budget := apdu_budget(series, delay)) is not None:
        result.notes.append(budget)
    result.notes.append(
        f"load average {load[0]:.2f} at start, {load[1]:.2f} at the end (1 min; 2-core machine)"
    )
    result.notes.append("time: the guest's own, summed over the five login checks (10 ms steps)")
    if failures:
        result.notes.append(f"failed runs, left out: {', '.join(failures)}")
    return result


#: The path the WAN target is judged on (the default card through ccid-passthru).
TARGET_PATH = "c-t1"


def apdu_budget(series: dict[str, dict[str, object]], delay: float) -> str | None:
    """How many APDUs a :data:`TARGET_PATH` login may take to meet :data:`WAN_TARGET`, by the
    model that a WAN login takes its loopback time plus one round trip per APDU; None unless
    the run measured the reference over the WAN and the path on loopback and over the WAN."""
    reference = series.get(f"wan {REFERENCE}")
    loopback = series.get(f"loopback {TARGET_PATH}")
    wan = series.get(f"wan {TARGET_PATH}")
    if reference is None or loopback is None or wan is None:
        return None
    apdus = wan["apdus"]
    if not isinstance(apdus, list) or not apdus:
        return None
    reference_s, loopback_s = reference["median_s"], loopback["median_s"]
    assert isinstance(reference_s, float)
    assert isinstance(loopback_s, float)
    round_trip = 2 * delay
    allowed = (WAN_TARGET * reference_s - loopback_s) / round_trip
    return (
        f"{TARGET_PATH} meets the WAN target with at most {max(allowed, 0):.0f} APDUs per login "
        f"(model: WAN time = loopback time + APDUs x {round_trip * 1000:g} ms; "
        f"{WAN_TARGET:g} x {reference_s:.2f} s - {loopback_s:.2f} s); it sent "
        f"{apdus[0]['commands']}"
    )


def run_login(
    runs: int = 3,
    delay_ms: float = 25.0,
    paths: Sequence[str] = PATH_KEYS,
    modes: Sequence[Mode] = ("loopback", "wan"),
    *,
    progress: bool = False,
    opensc_cache: bool = False,
    traces: Path | None = None,
) -> Section:
    """Measure the guest login; a section with a note instead of figures if a tool is missing."""
    chosen = [path for path in PATHS if path.key in paths]
    missing = missing_prerequisites(chosen)
    if missing:
        empty = section([], delay_ms / 1000, (os.getloadavg()[0],) * 2)
        empty.notes.insert(0, f"not measured: this host lacks {', '.join(missing)}")
        return empty
    before = os.getloadavg()[0]
    failures: list[str] = []
    results = asyncio.run(
        measure(
            chosen,
            modes,
            runs,
            delay_ms / 1000,
            failures,
            progress=progress,
            opensc_cache=opensc_cache,
            traces=traces,
        )
    )
    result = section(results, delay_ms / 1000, (before, os.getloadavg()[0]), failures)
    if opensc_cache:
        result.notes.append("the guest's OpenSC ran with its file cache on (--opensc-cache)")
    return result


def print_section(result: Section) -> None:
    say(f"{result.name}: {result.description}")
    say(f"{'mode':8} {'path':7} {'median s':>9} {'min-max s':>13} {'x a':>6}  steps (median s)")
    for row in result.series.values():
        seconds = row["seconds"]
        assert isinstance(seconds, list)
        ratio = row["ratio_to_a"]
        steps = row["steps_median_s"]
        assert isinstance(steps, dict)
        say(
            f"{row['mode']!s:8} {row['path']!s:7} {row['median_s']:9.2f} "
            f"{seconds[0]:6.2f}-{seconds[-1]:<6.2f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>6}  "
            + " ".join(f"{name} {value:.2f}" for name, value in steps.items())
        )
        apdus = row["apdus"]
        assert isinstance(apdus, list)
        if apdus:
            say(f"{'':17} APDUs per login: {apdus}")
    for figure in result.figures:
        if figure.target is not None:
            verdict = "met" if figure.met else "NOT met"
            say(f"  {figure.name}: {figure.ratio:.2f}x (target {figure.target.describe()}: "
                f"{verdict})")  # fmt: skip
    for note in result.notes:
        say(f"  note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="boots per path and mode (default 3)")
    parser.add_argument("--delay", type=float, default=25.0, help="WAN one-way delay, ms")
    parser.add_argument(
        "--paths", default=",".join(PATH_KEYS), help=f"from {', '.join(PATH_KEYS)} (default all)"
    )
    parser.add_argument("--no-loopback", action="store_true", help="only the WAN runs")
    parser.add_argument("--no-wan", action="store_true", help="only the loopback runs")
    parser.add_argument("--json", type=Path, help="also write the section here as JSON")
    parser.add_argument(
        "--opensc-cache",
        action="store_true",
        help="turn on the guest OpenSC's file cache (a guest-side lever, not the default)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="DIR",
        help="write each login's APDUs (step, command, response) to DIR/MODE-PATH-ROUND.txt",
    )
    args = parser.parse_args()
    keys = [key for key in args.paths.split(",") if key]
    unknown = sorted(set(keys) - set(PATH_KEYS))
    if unknown:
        parser.error(f"unknown paths {unknown}; known: {', '.join(PATH_KEYS)}")
    modes: list[Mode] = [] if args.no_loopback else ["loopback"]
    modes += [] if args.no_wan else ["wan"]
    result = run_login(
        args.runs,
        args.delay,
        keys,
        modes,
        progress=True,
        opensc_cache=args.opensc_cache,
        traces=args.trace,
    )
    print_section(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_json(), indent=2) + "\n")


if __name__ == "__main__":
    main()
