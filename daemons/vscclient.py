"""``vscclient HOST PORT``: connect local smart cards to a VSCard host (QEMU's
ccid-card-passthru, or our ccid-passthru), as libcacard's vscclient does, reworked.

Without a card option it serves the client's PC/SC readers, as libcacard's vscclient does
without ``-e`` (its default ``use_hw=yes``). QEMU's ccid-card-passthru holds one reader: when
the host shows that (see :mod:`daemons.local_readers`), it sees the one that holds a card.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from ssl import SSLContext

import structlog

import vscard
from cacard.backends import Pkcs11Token
from cacard.pin import PinFormatError, check_puk
from cacard.profile import Applications
from cardfloor.aio.signals import on_stop_signals
from cardfloor.stdio import write_quietly
from cardfloor.version import add_version_option
from vscard.tls import client_context

from . import event_loop
from .card_guard import ApduPolicy, CardGuard
from .card_lease import DEFAULT_HOLD, DEFAULT_WAIT, LeasePolicy
from .compare_card import CompareCard
from .console import Console, stdin_lines
from .emul_options import (
    EmulOptions,
    EmulOptionsError,
    HardwareType,
    UseHardware,
    parse_emul_options,
    soft_reader_for_nicknames,
)
from .emulated_cards import (
    CardSourceError,
    open_backend_card,
    open_card_directory,
    open_nss_cards,
)
from .gc_policy import tune_gc
from .local_readers import HostMirror
from .logconfig import LogFormat, configure_logging, level_from_debug
from .pcsc_readers import (
    PcscError,
    PcscWatcher,
    first_pcsc_card,
    require_pcsc_service,
    require_pyscard,
)

log = structlog.get_logger("daemons.vscclient")

EPILOG = """\
examples:
  vscclient --card ~/mycard 127.0.0.1 2001
      a card directory made by "cacard new ~/mycard"
  vscclient -e 'db="sql:/etc/pki/nssdb" use_hw=no soft=(,Test,CAC,,cert1,cert2,cert3)' host 2001
      an emulated CAC card from an NSS database, as libcacard's vscclient takes it
  vscclient -c cert1 -c cert2 -c cert3 host 2001
      the same with the default database /etc/pki/nssdb
  vscclient -e 'use_hw=no soft=(,Test,PIV,,cert1,cert2)' --puk 12345678 host 2001
  vscclient -c cert1 -c cert2 --profile piv host 2001
      a PIV card (9A, 9C) instead; CAC+PIV has both applications
  vscclient host 2001                     the PC/SC readers of this computer, with hotplug
  vscclient --pcsc=Gemalto host 2001      only readers whose name contains Gemalto

A host that holds one reader (QEMU's ccid-card-passthru) sees one of them: the first that
holds a card, until that card goes; our ccid-passthru sees every reader.

A real card stays usable by this computer's applications: the guest holds it (a PC/SC
transaction) while it sends APDUs and lets go after --pcsc-hold ms of quiet; the card is reset
each time it changes hands, so neither side uses a PIN the other verified.

stdin commands: insert [id], remove [id], select id, list, debug [level], exit, quit, help
"""

#: Reconnect delays (seconds): doubled after each failure, capped.
BACKOFF_FIRST, BACKOFF_CAP = 0.5, 30.0


class UsageError(Exception):
    """The command line cannot work; the message says why and what to do."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vscclient",
        description="Connect smart cards (emulated or real) to a VSCard host such as QEMU's "
        "ccid-card-passthru.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    parser.add_argument("host", help="the VSCard host (a name, IPv4 or IPv6 address)")
    parser.add_argument("port", help="its TCP port (or service name)")
    parser.add_argument(
        "-c",
        dest="nicknames",
        action="append",
        default=[],
        metavar="NICK",
        help="an NSS certificate nickname for the emulated card (repeatable, up to 100)",
    )
    parser.add_argument("-e", dest="emul", metavar="EMUL_ARGS", help="libcacard's options string")
    parser.add_argument(
        "-d",
        dest="debug",
        type=int,
        default=0,
        metavar="LEVEL",
        help="log level: 0 state changes (default), 1 and up every APDU",
    )
    parser.add_argument(
        "-p",
        dest="compare",
        action="store_true",
        help="compare mode: each APDU goes to the emulated card and to the card in the first "
        "PC/SC reader; the host gets the real card's answer, differences are logged",
    )
    parser.add_argument(
        "--card",
        action="append",
        default=[],
        metavar="DIR",
        help="a card directory made by 'cacard new' (repeatable)",
    )
    parser.add_argument(
        "--pcsc",
        nargs="?",
        const="",
        default=None,
        metavar="=READER",
        help="forward real PC/SC readers: all (the default without a card option), or "
        "(--pcsc=READER) those whose name contains READER",
    )
    parser.add_argument(
        "--pcsc-hold",
        type=_milliseconds,
        default=DEFAULT_HOLD,
        metavar="MS",
        help="keep a real card's PC/SC transaction for the guest until it has sent no APDU for "
        f"MS ms (default {DEFAULT_HOLD * 1000:.0f}), so this computer's applications get the card "
        "between the guest's operations, never inside one: longer covers slower guests, but "
        "makes those applications wait longer; 0 ends it after each APDU",
    )
    parser.add_argument(
        "--pcsc-wait",
        type=_milliseconds,
        default=DEFAULT_WAIT,
        metavar="MS",
        help="how long a guest's APDU waits while an application of this computer holds the "
        f"card (default {DEFAULT_WAIT * 1000:.0f}); then the guest gets 6F00",
    )
    parser.add_argument(
        "--pcsc-keep-state",
        action="store_true",
        help="do not reset a real card when it passes between the guest and this computer's "
        "applications (the default resets it, so neither uses a PIN the other verified)",
    )
    parser.add_argument(
        "--pkcs11",
        metavar="MODULE",
        help="an emulated card whose keys stay on a PKCS#11 token (e.g. libsofthsm2.so)",
    )
    parser.add_argument("--token", metavar="LABEL", help="the token, when the module has several")
    parser.add_argument(
        "--token-cert",
        action="append",
        default=[],
        metavar="LABEL",
        help="certificates by label, in card order (default: every RSA one with its key)",
    )
    parser.add_argument(
        "--token-pin-file", metavar="FILE", help="the token's user PIN, on the first line of FILE"
    )
    parser.add_argument(
        "--pin",
        help="the PIN of a card from an NSS database or a PKCS#11 token (default: the database "
        "password or token PIN, as in libcacard, else 77777777)",
    )
    parser.add_argument(
        "--profile",
        choices=[a.value for a in Applications],
        metavar="{cac,piv,cac+piv}",
        help="the applications of a card from -c NICK or --pkcs11 (default cac); an -e card's "
        "is its soft=(...) type, which this must not contradict; a card directory has its own",
    )
    parser.add_argument(
        "--puk",
        metavar="DIGITS",
        help="the PIV PUK (8 digits) of a card with PIV from -e, -c or --pkcs11 (default: "
        "blocked, so no host can reset the PIN's counter)",
    )
    parser.add_argument(
        "--nss-password-file",
        metavar="FILE",
        help="the NSS database password, on the first line of FILE",
    )
    parser.add_argument(
        "--pin-guard",
        type=int,
        default=1,
        metavar="N",
        help="answer 6983 to a command that could spend a PIN or PUK try (VERIFY, CHANGE "
        "REFERENCE DATA, RESET RETRY COUNTER, in any encoding) unless the card has more than N "
        "tries left on that counter (default 1; 0 turns the guard off)",
    )
    parser.add_argument(
        "--allow-ins",
        type=_hex_list,
        default=frozenset(),
        metavar="HEX,...",
        help="forward only these instructions (e.g. a4,b0,c0,20,ca,2a); others get 6D00",
    )
    parser.add_argument(
        "--allow-aid",
        type=bytes.fromhex,
        action="append",
        default=[],
        metavar="HEX",
        help="allow SELECT of applets whose AID starts with HEX only (repeatable); others 6A82, "
        "as is a SELECT by file identifier or path, and MANAGE CHANNEL OPEN gets 6881",
    )
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="speak TLS, trusting host certificates this CA signed"
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="client certificate (mutual TLS)")
    parser.add_argument("--tls-key", metavar="FILE", help="the client certificate's key")
    parser.add_argument(
        "--tls-server-name", metavar="NAME", help="name the host's certificate must carry"
    )
    parser.add_argument(
        "--reconnect", action="store_true", help="retry a lost connection with capped backoff"
    )
    parser.add_argument(
        "--no-read-ahead",
        action="store_true",
        help="do not send the card the reads the guest will likely send next (a CAC object's "
        "buffers, a read again with the Le a 6Cxx named) ahead of its asking; with our "
        "ccid-passthru that saves a round trip per read over a slow link",
    )
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    parser.add_argument("--timeout", type=float, default=10.0, help=argparse.SUPPRESS)
    return parser


def _milliseconds(text: str) -> float:
    """An option in milliseconds, as seconds."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole milliseconds") from None
    if not 0 <= value <= 3_600_000:
        raise argparse.ArgumentTypeError(f"{value} ms: expected 0 to 3600000")
    return value / 1000


def _hex_list(text: str) -> frozenset[int]:
    try:
        values = frozenset(int(item, 16) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected hex bytes like a4,b0") from None
    if any(not 0 <= value <= 0xFF for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each instruction is one byte")
    return values


@dataclass(frozen=True)
class Plan:
    """What the command line asks for, checked."""

    host: str
    port: int
    emul: EmulOptions | None
    card_dirs: tuple[str, ...]
    pcsc: str | None
    reconnect: bool
    timeout: float
    pin: str | None = None
    puk: str | None = None
    """The PIV PUK of NSS and PKCS#11 cards with PIV; None: blocked."""
    profile: Applications = Applications.CAC
    """The applications of the ``--pkcs11`` card (``-c`` and ``-e`` cards carry theirs)."""
    nss_password_file: str | None = None
    pkcs11: str | None = None
    token_label: str | None = None
    token_certificates: tuple[str, ...] = ()
    token_pin_file: str | None = None
    compare: bool = False
    ssl: SSLContext | None = None
    server_hostname: str | None = None
    guard: CardGuard = field(default_factory=CardGuard)
    pcsc_by_default: bool = False
    """No card option was given, so ``pcsc`` is the client's PC/SC readers."""
    lease: LeasePolicy = field(default_factory=LeasePolicy)
    """How a real card is shared with the client's applications."""
    read_ahead: bool = True
    """Offer the host the answers to the reads its guest will likely send next."""


def plan_from_args(args: argparse.Namespace) -> Plan:
    try:
        port = int(args.port)
    except ValueError:
        import socket

        try:
            port = socket.getservbyname(args.port, "tcp")
        except OSError:
            raise UsageError(f"port {args.port!r} is neither a number nor a service") from None
    if not 0 < port < 65536:
        raise UsageError(f"port {port} is out of range")
    if not 0 <= args.pin_guard <= 15:
        raise UsageError(f"--pin-guard {args.pin_guard}: a card counts 0 to 15 tries")
    if len(args.nicknames) > 100:
        raise UsageError("too many certificates: at most 100 -c options")
    profile = None if args.profile is None else Applications(args.profile)
    emul: EmulOptions | None = None
    if args.emul is not None or args.nicknames:
        try:
            emul = parse_emul_options(args.emul or "")
        except EmulOptionsError as error:
            raise UsageError(f"-e: {error}") from None
        _check_profile(profile, emul)
        if args.nicknames:
            soft = soft_reader_for_nicknames(args.nicknames, profile or Applications.CAC)
            emul = EmulOptions(
                emul.db, UseHardware.NO, emul.hw_type, emul.hw_params, (*emul.soft_readers, soft)
            )
    pcsc = args.pcsc
    if emul is not None and emul.hw_type is HardwareType.PASSTHRU:
        pcsc = pcsc if pcsc is not None else ""
        emul = None
    elif emul is not None and not emul.soft_readers:
        raise UsageError(
            "-e asks for NSS hardware tokens (use_hw without soft=), which vscclient does not "
            "emulate: give soft=(...) or -c NICK for an emulated card, or --pcsc for real readers"
        )
    if args.compare and (args.pcsc is not None or (emul is None and not args.card)):
        raise UsageError("-p compares an emulated card (-e, -c or --card) with a real one")
    # libcacard's vscclient without -e uses the client's real readers (use_hw=yes).
    pcsc_by_default = emul is None and not args.card and pcsc is None and args.pkcs11 is None
    if pcsc_by_default:
        pcsc = ""
    if args.pkcs11 is None and (args.token or args.token_cert or args.token_pin_file):
        raise UsageError("--token, --token-cert and --token-pin-file need --pkcs11 MODULE")
    _check_puk_and_profile(args, profile, emul)
    if args.pcsc_wait <= 0:
        raise UsageError("--pcsc-wait 0: a guest's APDU must be able to wait for the card")
    lease = LeasePolicy(args.pcsc_hold, args.pcsc_wait, reset=not args.pcsc_keep_state)
    tls: SSLContext | None = None
    if args.tls_ca is not None:
        try:
            tls = client_context(args.tls_ca, args.tls_cert, args.tls_key)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise UsageError(f"--tls-*: {error}") from None
    elif args.tls_cert or args.tls_key or args.tls_server_name:
        raise UsageError("--tls-cert, --tls-key and --tls-server-name need --tls-ca")
    return Plan(
        args.host,
        port,
        emul,
        tuple(args.card),
        pcsc,
        args.reconnect,
        args.timeout,
        pin=args.pin,
        puk=args.puk,
        profile=profile or Applications.CAC,
        nss_password_file=args.nss_password_file,
        pkcs11=args.pkcs11,
        token_label=args.token,
        token_certificates=tuple(args.token_cert),
        token_pin_file=args.token_pin_file,
        compare=args.compare,
        ssl=tls,
        server_hostname=args.tls_server_name,
        guard=CardGuard(args.pin_guard, ApduPolicy(args.allow_ins, frozenset(args.allow_aid))),
        pcsc_by_default=pcsc_by_default,
        lease=lease,
        read_ahead=not args.no_read_ahead,
    )


def _check_profile(profile: Applications | None, emul: EmulOptions) -> None:
    """An explicit ``--profile`` must say what each ``soft=(...)`` of ``-e`` says."""
    for reader in emul.soft_readers:
        if profile is not None and reader.applications is not profile:
            raise UsageError(
                f"--profile {profile.value} conflicts with soft=({reader.slot},{reader.name},"
                f"{reader.applications.value.upper()},...) of -e: the card type in soft=(...) "
                "is the card's profile (CAC, PIV or CAC+PIV)"
            )


def _check_puk_and_profile(
    args: argparse.Namespace, profile: Applications | None, emul: EmulOptions | None
) -> None:
    """``--profile`` and ``--puk`` describe NSS and PKCS#11 cards only, ``--puk`` one with PIV."""
    nss = emul is not None and emul.hw_type is not HardwareType.PASSTHRU and emul.soft_readers
    if profile is not None and not nss and args.pkcs11 is None:
        raise UsageError(
            f"--profile {profile.value} is for a card from -e, -c or --pkcs11; a card directory "
            "(--card) has its own (cacard new --profile)"
        )
    if args.puk is None:
        return
    try:
        check_puk(args.puk)
    except PinFormatError as error:
        raise UsageError(f"--puk: {error}") from None
    with_piv = (args.pkcs11 is not None and profile is not None and profile.piv) or (
        emul is not None and any(r.applications.piv for r in emul.soft_readers)
    )
    if not with_piv:
        raise UsageError(
            "--puk is for a card with PIV from -e, -c or --pkcs11: give --profile piv or "
            "cac+piv, or soft=(...,PIV,...); a card directory keeps its own PUK"
        )


async def add_emulated_readers(plan: Plan, mirror: HostMirror, stack: ExitStack) -> None:
    """Readers with emulated cards, from card directories and NSS databases."""
    try:
        for directory in plan.card_dirs:
            card = await asyncio.to_thread(open_card_directory, directory, stack)
            await mirror.add_reader(mirror.new_reader(f"vscard {card.name}", card))
        if plan.emul is not None:
            password = _read_password(plan.nss_password_file, "--nss-password-file")
            cards = await asyncio.to_thread(
                open_nss_cards,
                plan.emul,
                password=password,
                pin=plan.pin,
                puk=plan.puk,
                stack=stack,
            )
            for name, nss_card in cards:
                await mirror.add_reader(mirror.new_reader(name, nss_card))
        if plan.compare:
            real = await asyncio.to_thread(first_pcsc_card, plan.lease)
            for reader in mirror.readers:
                if reader.card is not None:
                    emulated = reader.card
                    reader.card = CompareCard(emulated, real)
                    # The emulated card forgets its login whenever the real one is reset
                    # on a handover, so the two keep answering alike.
                    real.on_reset = emulated.cold_reset
        if plan.pkcs11 is not None:
            try:
                token = Pkcs11Token(
                    plan.pkcs11,
                    plan.token_label,
                    plan.token_certificates or None,
                    _read_password(plan.token_pin_file, "--token-pin-file"),
                    plan.pin,
                    applications=plan.profile,
                    puk=plan.puk if plan.profile.piv else None,
                )
            except ValueError as error:
                raise UsageError(f"--pkcs11: {error}") from None
            name = f"PKCS#11 {plan.token_label or 'token'}"
            card = await asyncio.to_thread(open_backend_card, token, name, stack)
            await mirror.add_reader(mirror.new_reader(name, card))
    except (CardSourceError, PcscError) as error:
        raise UsageError(str(error)) from None


def _read_password(path: str | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        with open(path) as file:
            return file.readline().rstrip("\n")
    except OSError as error:
        raise UsageError(f"{option}: {error}") from None


class Daemon:
    """One vscclient run: readers, console, and the connection (with reconnects)."""

    def __init__(self, plan: Plan, log_format: LogFormat, debug: int) -> None:
        self.plan = plan
        self.mirror = HostMirror(plan.guard)
        self._stop = asyncio.Event()
        self._failed = False
        self._log_format = log_format
        self._tasks: list[asyncio.Task[None]] = []
        # Card directories stay locked (one server per card) until the run ends.
        self._cards = ExitStack()
        self.console = Console(
            self.mirror, self._print, on_exit=self._stop.set, set_debug=self._set_debug
        )
        self.console.debug = debug

    def _print(self, text: str) -> None:
        write_quietly(sys.stdout, text + "\n")

    def _set_debug(self, level: int) -> None:
        configure_logging(level_from_debug(level), self._log_format)

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, read_stdin: bool = True) -> int:
        with on_stop_signals(self._stop.set):  # a clean stop: the host sees cards go
            return await self._run(read_stdin)

    async def _run(self, read_stdin: bool) -> int:
        await add_emulated_readers(self.plan, self.mirror, self._cards)
        if self.plan.pcsc is not None:
            log.info("vscclient.pcsc_readers", name=self.plan.pcsc or "(all)")
            watcher = PcscWatcher(self.mirror, self.plan.pcsc or None, self.plan.lease)
            self._tasks.append(asyncio.create_task(self._watch(watcher)))
        if read_stdin:
            self._tasks.append(asyncio.create_task(self._read_console()))
        try:
            code = await self._connect_loop()
            return 1 if self._failed else code
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._cards.close()

    async def _watch(self, watcher: PcscWatcher) -> None:
        try:
            await watcher.run()
        except PcscError as error:
            log.error("vscclient.pcsc_failed", error=str(error))
            self._failed = True
            self._stop.set()

    async def _read_console(self) -> None:
        lines = stdin_lines(asyncio.get_running_loop())
        interactive = sys.stdin is not None and sys.stdin.isatty()
        while True:
            if interactive:
                sys.stdout.write("> ")
                sys.stdout.flush()
            line = await lines.get()
            if line is None:
                if interactive:  # Ctrl-D at the prompt means "exit"
                    self._stop.set()
                else:  # a service's /dev/null or a closed pipe: just stop reading
                    log.info("vscclient.stdin_closed")
                return
            await self.console.execute(line)

    async def _connect_loop(self) -> int:
        plan = self.plan
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                client = await vscard.connect(
                    plan.host,
                    plan.port,
                    timeout=plan.timeout,
                    ssl=plan.ssl,
                    server_hostname=plan.server_hostname,
                    read_ahead=plan.read_ahead,
                )
            except (OSError, TimeoutError, vscard.VSCardError) as error:
                log.warning(
                    "vscclient.connect_failed",
                    host=plan.host,
                    port=plan.port,
                    error=str(error) or type(error).__name__,
                )
                if not plan.reconnect:
                    return 1
                if await self._wait_stop(delay):
                    return 0
                delay = min(delay * 2, BACKOFF_CAP)
                continue
            # prefetch: the host takes GET RESPONSE chains read ahead (vscard.response_chain);
            # read_ahead: and the answers to the reads it foresees (vscard.read_ahead).
            log.info(
                "vscclient.connected",
                host=plan.host,
                port=plan.port,
                prefetch=client.response_chain,
                read_ahead=client.read_ahead,
            )
            try:
                await self.mirror.attach(client)
                delay = BACKOFF_FIRST
                outcome = await self._serve(client)
            except (vscard.VSCardError, TimeoutError, OSError) as error:
                log.warning("vscclient.connection_failed", error=str(error) or type(error).__name__)
                outcome = "lost"
            self.mirror.detach()
            if outcome == "stopped":
                return 0
            if not plan.reconnect:
                return 1
            if await self._wait_stop(delay):
                return 0
            delay = min(delay * 2, BACKOFF_CAP)
        return 0

    async def _serve(self, client: vscard.Client) -> str:
        closed = asyncio.create_task(client.wait_closed())
        stopping = asyncio.create_task(self._stop.wait())
        await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not closed.done():
            closed.cancel()
            # A clean exit: CardRemove and ReaderRemove reach the host before the socket closes.
            await client.close()
            log.info("vscclient.disconnected", reason="stopped")
            return "stopped"
        error = closed.exception()
        if error is not None:
            log.error("vscclient.host_error", error=str(error))
        else:
            log.warning("vscclient.disconnected", reason="host closed the connection")
        return "lost"

    async def _wait_stop(self, delay: float) -> bool:
        """Wait ``delay`` seconds unless asked to stop first; True if stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return self._stop.is_set()


def check_pcsc(plan: Plan) -> None:
    """Raise :class:`UsageError` when the plan needs PC/SC and cannot have it: what to
    install or start, and (with no card option given) which option gives a card instead."""
    try:
        if plan.compare:
            require_pyscard()
        if plan.pcsc is not None:
            require_pcsc_service()
    except PcscError as error:
        if plan.pcsc_by_default:
            raise UsageError(
                f"no card option, so this computer's PC/SC readers, but {error}; or give a "
                "card: --card DIR, -e 'soft=(...)', -c NICK or --pkcs11 MODULE"
            ) from None
        raise UsageError(f"{'-p' if plan.compare else '--pcsc'}: {error}") from None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; a bare ``--pcsc`` never swallows HOST as a reader name."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return build_parser().parse_args(["--pcsc=" if arg == "--pcsc" else arg for arg in argv])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(argv)
    configure_logging(level_from_debug(args.debug), args.log_format)
    try:
        plan = plan_from_args(args)
        check_pcsc(plan)
        daemon = Daemon(plan, args.log_format, args.debug)
        tune_gc()
        return event_loop.run(daemon.run())
    except (UsageError, PcscError) as error:
        parser.exit(2, f"vscclient: {error}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
