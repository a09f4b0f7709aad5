"""The ``cacard`` command: make a card, look at it, serve it to pcscd.

cacard new DIR [--profile cac|piv|cac+piv] [--pin PIN] [--puk PUK] [--certs N]
    [--key [SLOT=]KIND]... [--key-size BITS] [--upn NAME@REALM] [--name NAME] [--pin-tries N]
    [--atr ATR]
cacard import DIR (--cert CERT --key KEY | --pkcs12 FILE)... [--profile P] [--pin PIN]
    [--puk PUK] [--pin-tries N] [--atr ATR]
cacard info DIR
cacard serve-vpcd BACKEND [--host HOST] [--port 35963] [--once]
    BACKEND is one of
    DIR                                   a card directory
    --nss DB --cert NICK... [--nss-password-file FILE]
                                          an NSS database, certificates by nickname
    --pkcs11 MODULE [--token LABEL] [--cert LABEL...] [--token-pin-file FILE]
                                          a PKCS#11 token, certificates by CKA_LABEL
    and the last two take [--profile P] [--pin PIN] [--puk PUK] [--pin-tries N] [--atr ATR]
cacard unblock DIR [--pin NEW_PIN] [--puk NEW_PUK]

ATR is ``cac`` (libcacard's, T=0), ``cac-t1`` (T=0 and T=1), ``piv`` (T=0 and T=1) or hex; by
default the profile's (``cac`` for a CAC card, ``cac-t1`` for cac+piv, ``piv`` for piv: a card
with PIV offers T=1, which yubico-piv-tool needs). KIND is rsa2048, rsa3072, rsa4096, p256 or
p384; SLOT a certificate number (1-10) or, on a card with PIV, 9a, 9c, 9d or 9e.

``new`` and ``import`` make ``cac+piv`` cards unless told otherwise (docs/cacard.md says why);
the library's :class:`~cacard.generate.CardRequest` keeps ``cac`` as its default, so code
written against it makes the same card as before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509

from cardfloor.aio.signals import on_stop_signals
from cardfloor.log import get_logger
from cardfloor.stdio import configure_logging, write_quietly
from cardfloor.version import add_version_option

from .applets.pki import MAX_PKI_APPLETS
from .atr import NAMED_ATRS, ATRError, atr_from_name, protocols
from .backends import (
    Backend,
    BackendError,
    CardDirectory,
    NssDatabase,
    Pkcs11Token,
    open_backend,
)
from .card import Card
from .generate import (
    DEFAULT_CERTIFICATES,
    DEFAULT_KEY_SIZE,
    DEFAULT_NAME,
    DEFAULT_PUK,
    KEY_KINDS,
    PIV_PIN_HINT,
    PIV_SLOT_NAMES,
    CardRequest,
    KeyKind,
    check_card_pin,
    check_upn,
    generate_card,
)
from .keys import ECCardKey, key_description
from .pin import DEFAULT_MAX_TRIES, DEFAULT_PIN, PUK_TRIES, PinFormatError, PinState, check_puk
from .piv.objects import KeyReference, ObjectTag
from .profile import PIV_KEYS, Applications, ProfileError, card_id_from_certificate
from .rsa import UnsupportedKeyError
from .software import software_key
from .sources import SourceError, credential, load_certificate, load_private_key, read_pkcs12
from .store import CardStore, CredentialFiles, NewCard, StoreError, create
from .vpcd import VPCD_PORT, serve_vpcd

log = get_logger(__name__)

#: OpenSC's labels for PKI applets 0, 1, 2; the rest are "CAC Cert N".
OPENSC_LABELS: Final = (
    "CAC ID Certificate",
    "CAC Email Signature Certificate",
    "CAC Email Encryption Certificate",
)
#: Seconds between attempts to reach vpcd, doubling up to the maximum.
RETRY_FIRST: Final = 0.5
RETRY_MAX: Final = 5.0


def _say(line: str) -> None:
    """Write a line for the user (the CLI's output; logs go to stderr)."""
    write_quietly(sys.stdout, line + "\n")


class UsageError(Exception):
    """Arguments that make no sense together."""


_ATR_HELP = (
    f"{' or '.join(NAMED_ATRS)} or hex (default: the profile's: cac, T=0 only, for a CAC card; "
    "cac-t1 for cac+piv and piv for piv, which offer T=1 too, as yubico-piv-tool needs)"
)
_PUK_HELP = (
    f"the PIV PUK, 8 digits (default {DEFAULT_PUK}, the well-known PIV default PIV tools "
    "assume: change it for real use)"
)
#: OpenSC's PIV certificate labels, by key reference.
PIV_LABELS: Final = {
    KeyReference.PIV_AUTHENTICATION: "Certificate for PIV Authentication",
    KeyReference.DIGITAL_SIGNATURE: "Certificate for Digital Signature",
    KeyReference.KEY_MANAGEMENT: "Certificate for Key Management",
    KeyReference.CARD_AUTHENTICATION: "Certificate for Card Authentication",
}
#: serve-vpcd options that only some backends take, by destination, with their spelling.
_BACKEND_OPTIONS: Final = {
    "cert": ("--cert", ("nss", "pkcs11")),
    "token": ("--token", ("pkcs11",)),
    "nss_password_file": ("--nss-password-file", ("nss",)),
    "token_pin_file": ("--token-pin-file", ("pkcs11",)),
    "pin": ("--pin", ("nss", "pkcs11")),
    "pin_tries": ("--pin-tries", ("nss", "pkcs11")),
    "atr": ("--atr", ("nss", "pkcs11")),
    "profile": ("--profile", ("nss", "pkcs11")),
    "puk": ("--puk", ("nss", "pkcs11")),
}


@dataclass(frozen=True)
class KeyOption:
    """One ``--key [SLOT=]KIND``: ``slot`` as given (None: every certificate)."""

    slot: str | None
    kind: KeyKind

    @property
    def text(self) -> str:
        return self.kind.name if self.slot is None else f"{self.slot}={self.kind.name}"


def _key_option(text: str) -> KeyOption:
    """argparse type for --key."""
    slot, equals, name = text.rpartition("=")
    try:
        kind = KeyKind.named(name)
    except ProfileError as error:
        raise argparse.ArgumentTypeError(f"{error.reason}: key={text}") from None
    if not equals:
        return KeyOption(None, kind)
    slot = slot.strip().lower()
    if slot not in PIV_SLOT_NAMES and not (slot.isdigit() and 1 <= int(slot) <= MAX_PKI_APPLETS):
        raise argparse.ArgumentTypeError(
            f"a slot is a certificate number 1-{MAX_PKI_APPLETS} or a PIV key "
            f"({', '.join(PIV_SLOT_NAMES)}): key={text}"
        )
    return KeyOption(slot, kind)


def _upn(text: str) -> str:
    """argparse type for --upn."""
    try:
        return check_upn(text)
    except ProfileError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _puk(text: str) -> str:
    """argparse type for --puk."""
    try:
        return check_puk(text)
    except PinFormatError as error:
        raise argparse.ArgumentTypeError(f"{error} (puk)") from None


def _key_kinds(
    options: Sequence[KeyOption], certificates: int, applications: Applications
) -> dict[int, KeyKind]:
    """The key kind of each certificate (0-based) that ``--key`` names; later wins per slot."""
    kinds: dict[int, KeyKind] = {}
    for option in options:
        if option.slot is None:
            kinds = dict.fromkeys(range(certificates), option.kind)
            continue
        if option.slot in PIV_SLOT_NAMES:
            if not applications.piv:
                raise ProfileError(
                    "PIV key names need a card with PIV (--profile piv or cac+piv); "
                    "name the certificate by number",
                    field="key",
                    value=option.text,
                )
            kinds[PIV_SLOT_NAMES[option.slot]] = option.kind
        else:
            index = int(option.slot) - 1
            if index >= certificates:
                raise ProfileError(
                    f"the card has {certificates} certificates (--certs)",
                    field="key",
                    value=option.text,
                )
            kinds[index] = option.kind
    return kinds


def _atr(text: str) -> bytes:
    """argparse type for --atr."""
    try:
        return atr_from_name(text)
    except ATRError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _configure_logging(verbosity: int) -> None:
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(verbosity, 2)]
    configure_logging(level)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cacard", description="A virtual CAC smart card.")
    add_version_option(parser)
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: events, -vv: APDU traces"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    new = commands.add_parser("new", help="make a test card with a CA and fresh certificates")
    new.add_argument("directory", metavar="DIR")
    _add_profile(
        new,
        "the card applications (default cac+piv: a CAC with PIV beside it, as a real CAC, "
        "which Windows, macOS, OpenSC and PIV tools all use; cac is libcacard's card)",
        default=Applications.CAC_PIV,
    )
    new.add_argument(
        "--pin", default=DEFAULT_PIN, help=f"4-8 digits, 6-8 with PIV (default {DEFAULT_PIN})"
    )
    new.add_argument("--puk", type=_puk, help=_PUK_HELP + "; a card with PIV only")
    new.add_argument(
        "--certs",
        type=int,
        help=f"certificates, 1-{MAX_PKI_APPLETS} (default {DEFAULT_CERTIFICATES}: ID, "
        "signature, encryption; 4 on a card with PIV, the fourth its 9E card authentication)",
    )
    new.add_argument(
        "--key",
        type=_key_option,
        action="append",
        default=[],
        metavar="[SLOT=]KIND",
        help=f"the key kind ({', '.join(KEY_KINDS)}) of every certificate, or of one: SLOT is "
        f"its number (1-{MAX_PKI_APPLETS}) or, with PIV, 9a, 9c, 9d or 9e; repeat, later wins. "
        "EC keys need a profile with PIV (OpenSC's CAC driver is RSA-only)",
    )
    new.add_argument(
        "--key-size",
        type=int,
        default=DEFAULT_KEY_SIZE,
        metavar="BITS",
        help=f"RSA key size of the certificates --key does not set: --key rsaBITS for all "
        f"(default {DEFAULT_KEY_SIZE}; 1024 makes fast test cards)",
    )
    new.add_argument(
        "--upn",
        type=_upn,
        metavar="NAME@REALM",
        help="the User Principal Name on the ID (PIV Authentication, 9A) certificate, for "
        "Windows smart card logon",
    )
    new.add_argument("--name", default=DEFAULT_NAME, help="the holder's name")
    new.add_argument("--pin-tries", type=int, default=DEFAULT_MAX_TRIES, metavar="N")
    new.add_argument("--atr", type=_atr, help=_ATR_HELP)

    imp = commands.add_parser("import", help="make a card from existing certificates and keys")
    imp.add_argument("directory", metavar="DIR")
    imp.add_argument("--cert", action="append", default=[], help="certificate (PEM or DER)")
    imp.add_argument("--key", action="append", default=[], help="its private key (PEM or DER)")
    imp.add_argument("--pkcs12", action="append", default=[], help="a PKCS#12 file")
    imp.add_argument("--password", help="password of the keys or PKCS#12 files")
    _add_profile(
        imp,
        "the card applications (default cac+piv; cac is libcacard's card, RSA only)",
        default=Applications.CAC_PIV,
    )
    imp.add_argument("--pin", default=DEFAULT_PIN)
    imp.add_argument("--puk", type=_puk, help=_PUK_HELP + "; a card with PIV only")
    imp.add_argument("--pin-tries", type=int, default=DEFAULT_MAX_TRIES, metavar="N")
    imp.add_argument("--atr", type=_atr, help=_ATR_HELP)

    info = commands.add_parser("info", help="show what a card holds")
    info.add_argument("directory", metavar="DIR")

    serve = commands.add_parser(
        "serve-vpcd",
        help="serve a card to pcscd through vpcd",
        description="Serve a card directory (DIR), a card backed by an NSS database (--nss) or "
        "one backed by a PKCS#11 token (--pkcs11). The card PIN of the last two is --pin, "
        "else the database password or token PIN, else 77777777; their PIN retry counter "
        "lives in memory (a restart refills it).",
    )
    serve.add_argument("directory", metavar="DIR", nargs="?", help="a card directory")
    serve.add_argument("--nss", metavar="DB", help='an NSS database: "sql:DIR"')
    serve.add_argument("--pkcs11", metavar="MODULE", help="a PKCS#11 module (.so)")
    serve.add_argument(
        "--cert",
        action="append",
        metavar="NAME",
        help="a certificate with its key, by NSS nickname or PKCS#11 label; repeat, in card "
        "order (PKCS#11 default: every RSA certificate with its key, by CKA_ID)",
    )
    serve.add_argument("--token", metavar="LABEL", help="the PKCS#11 token, by label")
    serve.add_argument(
        "--nss-password-file", metavar="FILE", help="the database password: FILE's first line"
    )
    serve.add_argument(
        "--token-pin-file", metavar="FILE", help="the token's user PIN: FILE's first line"
    )
    serve.add_argument(
        "--pin", help="the card PIN (default: the database password or token PIN, else 77777777)"
    )
    serve.add_argument("--pin-tries", type=int, metavar="N", help="default 3")
    _add_profile(
        serve,
        "the card applications of an --nss or --pkcs11 card (default cac; a card directory "
        "has its own)",
        default=None,
    )
    serve.add_argument(
        "--puk",
        type=_puk,
        help="the PIV PUK of an --nss or --pkcs11 card with PIV, 8 digits (default: none, a "
        "PUK no value opens); its counter lives in memory",
    )
    serve.add_argument("--atr", type=_atr, help=_ATR_HELP)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=VPCD_PORT)
    serve.add_argument(
        "--once", action="store_true", help="exit when vpcd goes away instead of reconnecting"
    )

    unblock = commands.add_parser("unblock", help="refill the PIN tries (administrator reset)")
    unblock.add_argument("directory", metavar="DIR")
    unblock.add_argument("--pin", help="set this new PIN as well")
    unblock.add_argument(
        "--puk", type=_puk, help="set this new PIV PUK as well (a card with PIV; 8 digits)"
    )
    return parser


def _add_profile(
    parser: argparse.ArgumentParser,
    help_text: str,
    default: Applications | None = Applications.CAC,
) -> None:
    parser.add_argument(
        "--profile",
        type=Applications,
        choices=list(Applications),
        default=default,
        metavar="{" + ",".join(a.value for a in Applications) + "}",
        help=help_text,
    )


def _new(args: argparse.Namespace) -> int:
    certificates = args.certs
    if certificates is None:
        certificates = len(PIV_KEYS) if args.profile.piv else DEFAULT_CERTIFICATES
    request = CardRequest(
        pin=args.pin,
        certificates=certificates,
        key_size=args.key_size,
        name=args.name,
        max_tries=args.pin_tries,
        atr=args.atr,
        applications=args.profile,
        keys=_key_kinds(args.key, certificates, args.profile),
        upn=args.upn,
        puk=args.puk,
    )
    store = generate_card(args.directory, request)
    puk = request.puk_or_default
    _say(
        f"made card {store.path} ({args.profile.value}, PIN {args.pin}"
        + ("" if puk is None else f", PUK {puk}")
        + ")"
    )
    return _info(store)


def _import(args: argparse.Namespace) -> int:
    if len(args.cert) != len(args.key):
        raise UsageError("give one --key for every --cert, in the same order")
    password = args.password.encode() if args.password is not None else None
    pairs = [
        (load_certificate(cert), load_private_key(key, password), key)
        for cert, key in zip(args.cert, args.key, strict=True)
    ]
    pairs += [(*read_pkcs12(path, password), path) for path in args.pkcs12]
    if not pairs:
        raise UsageError("give at least one --cert/--key pair or --pkcs12 file")
    for certificate, key, where in pairs:
        credential(certificate, key, where=where)  # RSA, matching, of a size the card holds
    applications: Applications = args.profile
    if args.puk is not None and not applications.piv:
        raise ProfileError(
            "a PUK needs a card with PIV (--profile piv or cac+piv)",
            field="profile",
            value=applications.value,
        )
    check_card_pin(args.pin, applications, hint=PIV_PIN_HINT)
    files = [CredentialFiles(certificate, key) for certificate, key, _ in pairs]
    pin = PinState.create(args.pin, max_tries=args.pin_tries)
    puk = None
    if applications.piv:
        puk = PinState.create(args.puk or DEFAULT_PUK, max_tries=PUK_TRIES)
    card_id = card_id_from_certificate(files[0].certificate)
    atr = applications.default_atr if args.atr is None else args.atr
    new = NewCard(files, card_id, pin, atr=atr, applications=applications, puk=puk)
    store = create(args.directory, new)
    _say(f"made card {store.path} ({applications.value})")
    return _info(store)


def _describe(certificate: x509.Certificate) -> str:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        names = [
            name
            for name in (
                "digital_signature",
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
            )
            if getattr(usage, name)
        ]
    except x509.ExtensionNotFound:
        names = ["(no key usage)"]
    until = certificate.not_valid_after_utc.date().isoformat()
    return f"{certificate.subject.rfc4514_string()}, until {until}, {' '.join(names)}"


def _tries(name: str, state: PinState) -> str:
    if state.blocked:
        return f"{name:<11}BLOCKED (0 of {state.max_tries} tries left; cacard unblock)"
    return f"{name:<11}{state.tries_remaining} of {state.max_tries} tries left"


def _info(store: CardStore) -> int:
    profile = store.load_profile()
    applications = profile.applications
    pin = store.load_state().pin
    serial = profile.card_id.hex()
    _say(f"card       {store.path}")
    _say(f"profile    {applications.value}")
    _say(f"serial     {serial} (PKCS#11 token serial {serial[-16:]})")
    offered = " ".join(f"T={t}" for t in protocols(profile.atr))
    _say(f"ATR        {profile.atr.hex(' ').upper()} ({offered})")
    _say(_tries("PIN", pin))
    if applications.piv:
        puk = store.load_puk()
        if puk is None:
            _say("PUK        none: no value opens it (cacard unblock --puk sets one)")
        else:
            _say(_tries("PUK", puk))
    kept = store.load_piv() if applications.piv else None
    pki = 0
    for index, held in enumerate(profile.credentials):
        kind = key_description(held.key)
        reference = PIV_KEYS[index] if applications.piv and index < len(PIV_KEYS) else None
        piv = "" if reference is None else f", PIV {reference:02X}"
        if applications.cac and not isinstance(held.key, ECCardKey):
            label = OPENSC_LABELS[pki] if pki < len(OPENSC_LABELS) else f"CAC Cert {pki + 1}"
            _say(f"PKI {pki:<7}key 00:{pki + 1:02x} {label!r}, {kind}{piv}")
            pki += 1
        elif reference is not None:
            _say(f"PIV {reference:02X}     {PIV_LABELS[reference]!r}, {kind}")
        _say(f"           {_describe(held.certificate)}")
    for object_id, content in profile.data_objects.items():
        _say(f"data       {object_id.label}: {len(content)} bytes")
    if kept is not None:
        for reference, key in sorted(kept.keys.items()):
            generated = key_description(software_key(key))
            _say(f"PIV kept   key {reference:02X}: {generated}, made by GENERATE (PIV only)")
        for tag, written in sorted(kept.objects.items()):
            what = "deleted" if written is None else f"{len(written)} bytes"
            _say(f"PIV kept   object {tag:06X} ({_object_name(tag)}): {what}, by PUT DATA")
    return 0


def _object_name(tag: ObjectTag) -> str:
    return tag.name.replace("_", " ").lower()


def _unblock(args: argparse.Namespace) -> int:
    store = CardStore(args.directory)
    with store.lock():
        applications = store.load_profile().applications
        if args.puk is not None and not applications.piv:
            raise ProfileError(
                "a PUK needs a card with PIV", field="profile", value=applications.value
            )
        if args.pin is not None:
            check_card_pin(args.pin, applications)
        pin = store.load_state().pin.unblocked(args.pin)
        puk = store.load_puk()
        if args.puk is not None:
            iterations = pin.reference.iterations
            puk = PinState.create(args.puk, max_tries=PUK_TRIES, iterations=iterations)
        elif puk is not None:
            # The administrator's reset: a card whose PUK is blocked too is usable again.
            puk = puk.unblocked()
        store.save_states(pin, puk)
    done = "PIN unblocked" + (", new PIN set" if args.pin else "")
    if args.puk is not None:
        done += ", new PUK set"
    elif puk is not None:
        done += ", PUK tries refilled"
    _say(f"{store.path}: {done}")
    return 0


async def _serve(card: Card, host: str, port: int, once: bool) -> None:
    delay = RETRY_FIRST
    while True:
        try:
            await serve_vpcd(card, host, port)
            delay = RETRY_FIRST
        except OSError as error:
            log.warning("vpcd.unreachable", host=host, port=port, error=str(error), retry_in=delay)
            if once:
                raise
            await asyncio.sleep(delay)  # a back-off, not synchronisation: vpcd may start later
            delay = min(2 * delay, RETRY_MAX)
            continue
        if once:
            return


def _read_secret(path: str, option: str) -> str:
    """The first line of ``path``, without its line end (a secret never goes on argv)."""
    try:
        with open(path, encoding="utf-8") as file:
            return file.readline().rstrip("\r\n")
    except OSError as error:
        raise UsageError(f"{option} {path}: {error.strerror or error}") from None


def _backend(args: argparse.Namespace) -> Backend:
    """The backend serve-vpcd's arguments describe, checked for options that do not apply."""
    chosen = [
        kind
        for kind, value in (
            ("directory", args.directory),
            ("nss", args.nss),
            ("pkcs11", args.pkcs11),
        )
        if value is not None
    ]
    if len(chosen) != 1:
        raise UsageError("give one card: DIR, --nss DB or --pkcs11 MODULE")
    (kind,) = chosen
    misplaced = [
        spelling
        for name, (spelling, kinds) in _BACKEND_OPTIONS.items()
        if getattr(args, name) is not None and kind not in kinds
    ]
    if misplaced:
        where = {"directory": "a card directory", "nss": "--nss", "pkcs11": "--pkcs11"}[kind]
        raise UsageError(f"{', '.join(misplaced)}: not for {where}")
    if kind == "directory":
        return CardDirectory(Path(args.directory))
    pin_tries = DEFAULT_MAX_TRIES if args.pin_tries is None else args.pin_tries
    applications = Applications.CAC if args.profile is None else args.profile
    if kind == "nss":
        if not args.cert:
            raise UsageError("--nss: name its certificates with --cert NICKNAME")
        password = None
        if args.nss_password_file is not None:
            password = _read_secret(args.nss_password_file, "--nss-password-file")
        return NssDatabase(
            args.nss,
            tuple(args.cert),
            password,
            pin=args.pin,
            max_tries=pin_tries,
            applications=applications,
            atr=args.atr,
            puk=args.puk,
        )
    token_pin = None
    if args.token_pin_file is not None:
        token_pin = _read_secret(args.token_pin_file, "--token-pin-file")
    return Pkcs11Token(
        args.pkcs11,
        token_label=args.token,
        labels=tuple(args.cert) if args.cert else None,
        token_pin=token_pin,
        pin=args.pin,
        max_tries=pin_tries,
        applications=applications,
        atr=args.atr,
        puk=args.puk,
    )


def _serve_vpcd(args: argparse.Namespace) -> int:
    backend = _backend(args)
    with open_backend(backend) as card:  # fail now, not on the first connection
        _say(f"serving {backend.description} to vpcd at {args.host}:{args.port}")

        async def main() -> None:
            task = asyncio.current_task()
            assert task is not None
            with on_stop_signals(task.cancel), contextlib.suppress(asyncio.CancelledError):
                await _serve(card, args.host, args.port, args.once)

        asyncio.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {
        "new": _new,
        "import": _import,
        "info": lambda a: _info(CardStore(a.directory)),
        "serve-vpcd": _serve_vpcd,
        "unblock": _unblock,
    }
    try:
        return handlers[args.command](args)
    except (
        StoreError,
        SourceError,
        BackendError,
        UsageError,
        PinFormatError,
        UnsupportedKeyError,
        ValueError,
        OSError,
    ) as error:
        write_quietly(sys.stderr, f"cacard: {error}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
