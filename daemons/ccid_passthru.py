"""``ccid-passthru --listen 2001``: what QEMU's ccid-card-passthru + usb-ccid do, without QEMU.

Every reader a VSCard client (our vscclient, libcacard's, a SPICE-style client) adds becomes a
virtual USB CCID reader exported over USB/IP, so any Linux host can ``usbip attach`` it.
``--card DIR`` adds readers with an in-process emulated card and no client at all, behind the
PIN guard (``--pin-guard N``, :mod:`daemons.card_guard`) as vscclient puts its cards.

A client that announces our CardReset extension (our vscclient; see :mod:`vscard.host`) hears
of what the importer's reader does to its card: a power cycle resets the card, and the card
learns the protocol the reader runs. QEMU's clients (libcacard's vscclient) announce nothing
and get nothing new: their card keeps its state across power cycles, as under QEMU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import sys
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import structlog

import vscard
from cacard.atr import preferred_protocol
from cardfloor.aio.signals import on_stop_signals
from cardfloor.version import add_version_option
from ccid import CCIDDevice, CCIDReader
from ccid.configuration import ReaderConfiguration
from ccid.usbip import DEFAULT_MAX_USBIP_CONNECTIONS, USBIPServer, serve_usbip
from vscard.asyncio.server import DEFAULT_HANDSHAKE_TIMEOUT, Answered
from vscard.local_answers import LocalAnswers
from vscard.response_chain import Continue
from vscard.tls import server_context

from . import event_loop
from .busids import BusidMemory, reader_identity
from .card_guard import CardGuard
from .emulated_cards import CardSourceError, EmulatedCard, open_card_directory
from .gc_policy import tune_gc
from .listen_address import ListenAddress, listen_address
from .logconfig import configure_logging, level_from_debug

log = structlog.get_logger("daemons.ccid_passthru")

EPILOG = """\
examples:
  ccid-passthru --listen 2001
      VSCard clients on port 2001 (all interfaces); their readers on USB/IP 127.0.0.1:3240
  vscclient --card ~/mycard 127.0.0.1 2001          (a client, elsewhere)
  usbip --tcp-port 3240 list -r 127.0.0.1 ; usbip attach -r 127.0.0.1 -b 1-1
  ccid-passthru --card ~/mycard                       an emulated card, no client needed
  ccid-passthru --card ~/pivcard --pin-guard 2        a PIV card ("cacard new --profile piv"),
                                                      its last two PIN tries kept from importers
"""


class RemoteCard:
    """A card in a VSCard client's reader, as a :class:`ccid.ICC`.

    With a client that announced our CardReset extension, the importer's power cycles and the
    protocol ``reader`` runs reach the client's card:

    - Each power-off, power-on or USB reset of the slot sends a CardReset at once, unless none
      was needed: two with no APDU between them are one (which also bounds what an importer
      that loops power cycles makes us write). The first one after the card appeared is
      sent: the client's card may hold state from before (a host application, an earlier
      importer).
    - The card runs T=1 when its ATR offers it (as ``--card`` cards do: our reader configures
      the protocol itself, so libccid sends no SetParameters) or when the importer set T=1
      with SetParameters; else T=0. Each APDU first tells the client of a change
      (CardProtocol), so the card learns it before the command that needs it.

    The client finishes each before it handles the next APDU (VSCard is ordered per
    connection), so no APDU reaches an unreset card and nothing waits for an answer.
    """

    def __init__(
        self,
        session: vscard.Session,
        reader_id: int,
        atr: bytes,
        reader: CCIDReader | None = None,
    ) -> None:
        self._session = session
        self._reader_id = reader_id
        self._atr = atr
        self._reader = reader
        self._offers_t1 = preferred_protocol(atr) == 1
        # Whether the card may hold state a reset would clear; the protocol the client's card
        # was last told (None: not yet).
        self._used = True
        self._told: int | None = None
        # The rest of a 61xx answer the client read ahead (vscard.response_chain), and the
        # answers to the commands it expects next (vscard.read_ahead).
        self._local = LocalAnswers()

    @property
    def atr(self) -> bytes:
        return self._atr

    @property
    def protocol(self) -> int:
        """The protocol the client's card should run (see the class)."""
        if self._offers_t1:
            return 1
        parameters = None if self._reader is None else self._reader.parameters
        return 1 if parameters is not None and parameters.bProtocolNum == 1 else 0

    async def transmit(self, apdu: bytes) -> bytes:
        prepared = self._prepare(apdu)
        if isinstance(prepared, bytes):
            return prepared
        prefix, command = prepared
        response = await self._session.transmit(self._reader_id, command)
        return self._complete(prefix, command, response)

    def transmit_soon(self, apdu: bytes, answered: Answered) -> Callable[[], object]:
        """:meth:`transmit` as a callback (``ccid.device.TransmitSoon``): the APDU goes to the
        client now and ``answered`` gets the response in the session's read, with no task;
        a task only when the session makes the APDU wait its turn. Returns what cancels it."""
        try:
            prepared = self._prepare(apdu)
        except Exception as error:  # as transmit would raise it
            answered(error)
            return _nothing
        if isinstance(prepared, bytes):
            answered(prepared)
            return _nothing
        prefix, command = prepared
        pending = _Pending(functools.partial(self._complete, prefix, command), answered)
        try:
            sent = self._session.transmit_soon(self._reader_id, command, pending.answer)
        except Exception as error:  # as transmit would raise it
            answered(error)
            return _nothing
        if sent:
            return pending.cancel
        later = self._transmit_later(command, pending.answer)
        return asyncio.get_running_loop().create_task(later, name="passthru-transmit").cancel

    async def _transmit_later(self, command: bytes, answer: Answered) -> None:
        """``command`` through :meth:`vscard.Session.transmit`, which waits its turn."""
        try:
            response = await self._session.transmit(self._reader_id, command)
        except Exception as error:
            answer(error)
        else:
            answer(response)

    def _prepare(self, apdu: bytes) -> bytes | tuple[bytes, bytes]:
        """The answer from what the client read ahead (vscard.local_answers), or what goes
        before the client's response and the command to send it (telling the client the
        protocol first)."""
        session = self._session
        prefix = b""
        local = self._local
        if local.held:
            answer = local.answer(apdu)
            if isinstance(answer, Continue):
                prefix, apdu = answer.prefix, answer.command
            elif answer is not None:
                return answer
        if session.card_reset:
            protocol = self.protocol
            if protocol != self._told:
                session.set_protocol(self._reader_id, protocol)
                self._told = protocol
            self._used = True
        return prefix, apdu

    def _complete(self, prefix: bytes, command: bytes, response: bytes) -> bytes:
        """The response to ``command``, after ``prefix``; holds what it came with."""
        session = self._session
        reader_id = self._reader_id
        rest = session.take_response_chain(reader_id)
        ahead = session.take_read_ahead(reader_id)
        if rest is not None or ahead:
            self._local.took(command, rest, ahead)
        return prefix + response if prefix else response

    def reset(self) -> None:
        """The importer powered the card up or down: reset the client's card (see the class).

        Without the extension, VSCard has no reset: the client's card keeps its state, as
        under QEMU.
        """
        self._local.drop()
        session = self._session
        if not self._used or not session.card_reset or session.closed:
            return
        protocol = self.protocol
        try:
            session.reset_card(self._reader_id, protocol)
        except vscard.LocalProtocolError as error:  # the card left meanwhile
            log.debug("passthru.card_reset_skipped", reader_id=self._reader_id, error=str(error))
            return
        self._used = False
        self._told = protocol


def _nothing() -> None:
    """The cancel of an APDU answered already."""


class _Pending:
    """A :meth:`RemoteCard.transmit_soon` APDU awaiting the client's answer."""

    __slots__ = ("_answered", "_cancelled", "_complete")

    def __init__(self, complete: Callable[[bytes], bytes], answered: Answered) -> None:
        self._complete = complete
        self._answered = answered
        self._cancelled = False

    def answer(self, result: bytes | Exception) -> None:
        """The session's answer: dropped once cancelled, as a cancelled transmit drops it
        (the chain it came with stays in the session until the next APDU)."""
        if self._cancelled:
            return
        self._answered(result if isinstance(result, Exception) else self._complete(result))

    def cancel(self) -> None:
        self._cancelled = True


class GuardedCard:
    """An in-process card behind the PIN guard, as a :class:`ccid.ICC`: the importer is the
    host the guard keeps the card's last tries from.

    A card whose ATR offers T=1 runs T=1 (a command without Le gets its data at once, as
    yubico-piv-tool's SELECT needs): our reader offers both, frames neither (extended APDU
    level) and configures the protocol itself, so libccid sends no SetParameters, and pcscd
    chooses T=1 when it is offered.
    """

    def __init__(self, card: EmulatedCard, guard: CardGuard) -> None:
        card.protocol = preferred_protocol(card.atr)
        self._card = card
        self._guard = guard
        self.name = card.name

    @property
    def atr(self) -> bytes:
        return self._card.atr

    def transmit(self, apdu: bytes) -> Coroutine[Any, Any, bytes]:
        """The guard's answer, or the card's own ``transmit`` (no coroutine of ours)."""
        return self._guard.transmit(self._card, apdu)

    def reset(self) -> None:
        # As vscclient's readers do on a reset: a chain, an ENVELOPE attempt or a selection
        # the guard followed ended with the power cycle.
        self._card.reset()
        self._guard.forget(self._card)


@dataclass
class _Exported:
    device: CCIDDevice
    busid: str
    identity: Hashable


class Passthru:
    """Maps VSCard readers and cards onto exported USB/IP devices.

    A reader that comes back (same client address, same name: :mod:`daemons.busids`) gets the
    bus id it had while that is free, so a host re-attaching ``-b 1-1`` finds it again.
    """

    def __init__(self, usbip: USBIPServer, busids: BusidMemory | None = None) -> None:
        self._usbip = usbip
        self._memory = busids if busids is not None else BusidMemory()
        self.busids: set[str] = set()
        """Busids exported now."""
        self._changed = asyncio.Event()

    def export(self, name: str, identity: Hashable | None = None) -> _Exported:
        """Export a reader called ``name``; ``identity`` (default: the name) picks its bus id."""
        identity = identity if identity is not None else ("", name)
        device = CCIDDevice(ReaderConfiguration(product=f"vscard: {name}"[:120]))
        busid = self._memory.allocate(identity, self._usbip.exports)
        export = self._usbip.add_device(device, busid=busid)
        self.busids.add(export.busid)
        self._notify()
        return _Exported(device, export.busid, identity)

    async def unexport(self, exported: _Exported) -> None:
        await self._usbip.remove_device(exported.busid)
        await exported.device.aclose()
        self.busids.discard(exported.busid)
        self._memory.release(exported.identity, exported.busid)
        self._notify()

    async def wait_for_devices(self, count: int) -> set[str]:
        """Wait until exactly ``count`` devices are exported; return their busids."""
        while len(self.busids) != count:
            changed = self._changed
            await changed.wait()
        return set(self.busids)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def handle(self, session: vscard.Session) -> None:
        """One VSCard connection: its readers live exactly as long as it does."""
        exported: dict[int, _Exported] = {}
        slog = log.bind(peer=session.peer)
        try:
            async for event in session.events():
                match event:
                    case vscard.ReaderAdded(reader_id, name):
                        name = name or f"reader {reader_id}"
                        identity = reader_identity(session.peer, name)
                        exported[reader_id] = self.export(name, identity)
                        slog.info(
                            "passthru.device_exported",
                            reader_id=reader_id,
                            busid=exported[reader_id].busid,
                            name=name,
                        )
                    case vscard.CardInserted(reader_id, atr) if reader_id in exported:
                        try:
                            device = exported[reader_id].device
                            device.insert_card(RemoteCard(session, reader_id, atr, device.reader))
                        except ValueError as error:
                            slog.warning(
                                "passthru.card_refused",
                                reader_id=reader_id,
                                atr=atr.hex(),
                                error=str(error),
                            )
                            continue
                        slog.info(
                            "passthru.card_inserted",
                            reader_id=reader_id,
                            busid=exported[reader_id].busid,
                            atr=atr.hex(),
                        )
                    case vscard.CardRemoved(reader_id) if reader_id in exported:
                        exported[reader_id].device.remove_card()
                        slog.info(
                            "passthru.card_removed",
                            reader_id=reader_id,
                            busid=exported[reader_id].busid,
                        )
                    case vscard.ReaderRemoved(reader_id) if reader_id in exported:
                        gone = exported.pop(reader_id)
                        await self.unexport(gone)
                        slog.info(
                            "passthru.device_unplugged", reader_id=reader_id, busid=gone.busid
                        )
        finally:
            for reader_id, gone in exported.items():
                await self.unexport(gone)
                slog.info(
                    "passthru.device_unplugged",
                    reader_id=reader_id,
                    busid=gone.busid,
                    reason="client disconnected",
                )
            if session.error is not None:
                # The server has already warned why, rate-limited: a hostile client that is cut
                # off again and again must not get one unlimited warning per connection here.
                slog.debug("passthru.client_error", error=str(session.error))


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ccid-passthru",
        description="Accept VSCard clients and export each of their readers as a USB CCID "
        "reader over USB/IP.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version_option(parser)
    parser.add_argument(
        "--listen",
        type=listen_address(None),
        metavar="[HOST:]PORT",
        help="accept VSCard clients here (all interfaces when HOST is omitted)",
    )
    parser.add_argument(
        "--usbip",
        type=listen_address("127.0.0.1"),
        default=ListenAddress("127.0.0.1", 3240),
        metavar="[HOST:]PORT",
        help="export readers over USB/IP here (default 127.0.0.1:3240)",
    )
    parser.add_argument(
        "--card",
        action="append",
        default=[],
        metavar="DIR",
        help="also export a reader with this emulated card (repeatable)",
    )
    parser.add_argument(
        "--pin-guard",
        type=int,
        default=1,
        metavar="N",
        help="for --card cards: answer 6983 to a command that could spend a PIN or PUK try "
        "(VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, in any encoding) unless the card "
        "has more than N tries left on that counter (default 1; 0 turns the guard off). A "
        "VSCard client's cards are guarded by the client (vscclient --pin-guard)",
    )
    parser.add_argument(
        "-d",
        "--debug",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="LEVEL",
        help="log every APDU (and URB) at debug level",
    )
    parser.add_argument("--tls-cert", metavar="FILE", help="serve VSCard over TLS with this cert")
    parser.add_argument("--tls-key", metavar="FILE", help="the TLS certificate's key")
    parser.add_argument(
        "--tls-ca", metavar="FILE", help="require client certificates signed by this CA (mTLS)"
    )
    parser.add_argument(
        "--allow",
        type=ipaddress.ip_network,
        action="append",
        metavar="CIDR",
        help="accept VSCard clients only from these networks (repeatable)",
    )
    parser.add_argument(
        "--usbip-allow",
        type=ipaddress.ip_network,
        action="append",
        metavar="CIDR",
        help="accept USB/IP importers only from these networks (repeatable)",
    )
    parser.add_argument(
        "--max-clients-per-source",
        type=int,
        default=64,
        metavar="N",
        help="VSCard connections from one address at once (default 64); see --max-clients",
    )
    parser.add_argument(
        "--max-clients",
        type=int,
        default=256,
        metavar="N",
        help="VSCard connections served at once; more are closed (default 256). Idle ones "
        "count too: one that has not sent its Init holds its slot (and one of its address's "
        "--max-clients-per-source) until --handshake-timeout, one that has holds it until it "
        "closes, with or without readers (a vscclient waiting for a card)",
    )
    parser.add_argument(
        "--handshake-timeout",
        type=_seconds,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="SECONDS",
        help="a VSCard connection that has not sent its Init after this long is closed "
        f"(default {DEFAULT_HANDSHAKE_TIMEOUT:g}): N silent connections from one "
        "address lock it out for at most this long",
    )
    parser.add_argument(
        "--usbip-max-clients",
        type=int,
        default=DEFAULT_MAX_USBIP_CONNECTIONS,
        metavar="N",
        help=f"USB/IP connections served at once (default {DEFAULT_MAX_USBIP_CONNECTIONS})",
    )
    parser.add_argument(
        "--usbip-max-clients-per-source",
        type=int,
        default=None,
        metavar="N",
        help="USB/IP connections from one address at once (each imported reader is one; "
        "default: only --usbip-max-clients applies)",
    )
    parser.add_argument("--log-format", choices=("console", "json"), default="console")
    return parser


def _loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def warn_about_exposure(args: argparse.Namespace) -> None:
    """A card is a credential: say so when a listener is open to the network unguarded."""
    if not _loopback(args.usbip.host) and not args.usbip_allow:
        log.warning(
            "passthru.usbip_exposed",
            address=str(args.usbip),
            advice="USB/IP has no encryption: give --usbip-allow CIDR or keep it on loopback",
        )
    if (
        args.listen is not None
        and not _loopback(args.listen.host)
        and args.tls_cert is None
        and not args.allow
    ):
        log.warning(
            "passthru.vscard_exposed",
            address=str(args.listen),
            advice="give --tls-cert/--tls-key (and --tls-ca) or --allow CIDR",
        )


async def run(args: argparse.Namespace, stop: asyncio.Event) -> int:
    tls: SSLContext | None = None
    if args.tls_cert is not None or args.tls_key is not None:
        try:
            tls = server_context(args.tls_cert, args.tls_key, args.tls_ca)
        except (OSError, TypeError, ValueError) as error:
            log.error("passthru.tls_failed", error=str(error))
            return 2
    guard = CardGuard(args.pin_guard)
    with contextlib.ExitStack() as cards:
        emulated: list[GuardedCard] = []
        try:
            for directory in args.card:
                opened = await asyncio.to_thread(open_card_directory, directory, cards)
                emulated.append(GuardedCard(opened, guard))
        except CardSourceError as error:
            log.error("passthru.card_failed", error=str(error))
            return 2
        warn_about_exposure(args)
        try:
            usbip = await serve_usbip(
                (),
                args.usbip.host,
                args.usbip.port,
                allow=args.usbip_allow,
                max_connections=args.usbip_max_clients,
                max_connections_per_source=args.usbip_max_clients_per_source,
            )
        except OSError as error:
            log.error("passthru.listen_failed", address=str(args.usbip), error=str(error))
            return 1
        async with usbip:
            passthru = Passthru(usbip)
            for card in emulated:
                exported = passthru.export(card.name)
                exported.device.insert_card(card)
                log.info(
                    "passthru.device_exported",
                    busid=exported.busid,
                    card=card.name,
                    atr=card.atr.hex(),
                    pin_guard=guard.keep,
                )
            vscard_server: vscard.Server | None = None
            if args.listen is not None:
                try:
                    vscard_server = await vscard.serve(
                        passthru.handle,
                        args.listen.host,
                        args.listen.port,
                        max_connections=args.max_clients,
                        max_connections_per_source=args.max_clients_per_source,
                        handshake_timeout=args.handshake_timeout,
                        allow=args.allow,
                        ssl=tls,
                        response_chain=True,
                        read_ahead=True,
                    )
                except OSError as error:
                    log.error("passthru.listen_failed", address=str(args.listen), error=str(error))
                    return 1
            log.info(
                "passthru.ready",
                vscard=str(ListenAddress(args.listen.host, vscard_server.port))
                if vscard_server is not None and args.listen is not None
                else None,
                usbip=str(ListenAddress(args.usbip.host, usbip.port)),
            )
            try:
                await stop.wait()
            finally:
                log.info("passthru.stopping")
                if vscard_server is not None:
                    vscard_server.close()
                    await vscard_server.wait_closed()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.listen is None and not args.card:
        parser.error("nothing to export: give --listen [HOST:]PORT and/or --card DIR")
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    if args.tls_ca is not None and args.tls_cert is None:
        parser.error("--tls-ca needs --tls-cert and --tls-key")
    if not 0 <= args.pin_guard <= 15:
        parser.error(f"--pin-guard {args.pin_guard}: a card counts 0 to 15 tries")
    configure_logging(level_from_debug(args.debug), args.log_format)

    async def main_task() -> int:
        stop = asyncio.Event()
        with on_stop_signals(stop.set):
            return await run(args, stop)

    tune_gc()
    return event_loop.run(main_task())


if __name__ == "__main__":
    sys.exit(main())
