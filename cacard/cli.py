"""The ``cacard`` command: make a card, look at it, serve it to pcscd.

cacard new DIR [--profile cac|piv|cac+piv] [--pin PIN] [--certs N] [--key-size BITS] [--name NAME]
    [--pin-tries N] [--atr ATR]
cacard import DIR (--cert CERT --key KEY | --pkcs12 FILE)... [--pin PIN] [--pin-tries N] [--atr ATR]
cacard info DIR
cacard serve-vpcd BACKEND [--host HOST] [--port 35963] [--once]
    BACKEND is one of
    DIR                                   a card directory
    --nss DB --cert NICK... [--nss-password-file FILE]
                                          an NSS database, certificates by nickname
    --pkcs11 MODULE [--token LABEL] [--cert LABEL...] [--token-pin-file FILE]
                                          a PKCS#11 token, certificates by CKA_LABEL
    and the last two take [--pin PIN] [--pin-tries N] [--atr ATR]
cacard unblock DIR [--pin NEW_PIN]

ATR is ``cac`` (libcacard's, T=0; the default), ``cac-t1`` (T=0 and T=1) or hex.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from cardfloor.aio.signals import on_stop_signals
from cardfloor.log import get_logger
from cardfloor.stdio import configure_logging, write_quietly
from cardfloor.version import add_version_option

from .applets.pki import MAX_PKI_APPLETS
from .atr import CAC_ATR, NAMED_ATRS, ATRError, atr_from_name, protocols
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
    CardRequest,
    generate_card,
)
from .keys import key_description
from .pin import DEFAULT_MAX_TRIES, DEFAULT_PIN, PinFormatError, PinState
from .profile import Applications, card_id_from_certificate
from .rsa import UnsupportedKeyError
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


_ATR_HELP = f"{' or '.join(NAMED_ATRS)} (default: cac, T=0 only; cac-t1 offers T=1 too) or hex"
#: serve-vpcd options that only some backends take, by destination, with their spelling.
_BACKEND_OPTIONS: Final = {
    "cert": ("--cert", ("nss", "pkcs11")),
    "token": ("--token", ("pkcs11",)),
    "nss_password_file": ("--nss-password-file", ("nss",)),
    "token_pin_file": ("--token-pin-file", ("pkcs11",)),
    "pin": ("--pin", ("nss", "pkcs11")),
    "pin_tries": ("--pin-tries", ("nss", "pkcs11")),
    "atr": ("--atr", ("nss", "pkcs11")),
}


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
    new.add_argument(
        "--profile",
        type=Applications,
        choices=list(Applications),
        default=Applications.CAC,
        metavar="{" + ",".join(a.value for a in Applications) + "}",
        help="the card applications (default cac: OpenSC's CAC driver, as libcacard; "
        "Windows and macOS need piv or cac+piv)",
    )
    new.add_argument(
        "--pin", default=DEFAULT_PIN, help=f"4-8 digits, 6-8 with PIV (default {DEFAULT_PIN})"
    )
    new.add_argument(
        "--certs",
        type=int,
        default=DEFAULT_CERTIFICATES,
        help=f"certificates, 1-{MAX_PKI_APPLETS} (default {DEFAULT_CERTIFICATES}: ID, "
        "signature, encryption)",
    )
    new.add_argument("--key-size", type=int, default=DEFAULT_KEY_SIZE, metavar="BITS")
    new.add_argument("--name", default=DEFAULT_NAME, help="the holder's name")
    new.add_argument("--pin-tries", type=int, default=DEFAULT_MAX_TRIES, metavar="N")
    new.add_argument("--atr", type=_atr, default=CAC_ATR, help=_ATR_HELP)

    imp = commands.add_parser("import", help="make a card from existing certificates and keys")
    imp.add_argument("directory", metavar="DIR")
    imp.add_argument("--cert", action="append", default=[], help="certificate (PEM or DER)")
    imp.add_argument("--key", action="append", default=[], help="its private key (PEM or DER)")
    imp.add_argument("--pkcs12", action="append", default=[], help="a PKCS#12 file")
    imp.add_argument("--password", help="password of the keys or PKCS#12 files")
    imp.add_argument("--pin", default=DEFAULT_PIN)
    imp.add_argument("--pin-tries", type=int, default=DEFAULT_MAX_TRIES, metavar="N")
    imp.add_argument("--atr", type=_atr, default=CAC_ATR, help=_ATR_HELP)

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
    serve.add_argument("--atr", type=_atr, help=_ATR_HELP)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=VPCD_PORT)
    serve.add_argument(
        "--once", action="store_true", help="exit when vpcd goes away instead of reconnecting"
    )

    unblock = commands.add_parser("unblock", help="refill the PIN tries (administrator reset)")
    unblock.add_argument("directory", metavar="DIR")
    unblock.add_argument("--pin", help="set this new PIN as well")
    return parser


def _new(args: argparse.Namespace) -> int:
    request = CardRequest(
        pin=args.pin,
        certificates=args.certs,
        key_size=args.key_size,
        name=args.name,
        max_tries=args.pin_tries,
        atr=args.atr,
        applications=args.profile,
    )
    store = generate_card(args.directory, request)
    _say(f"made card {store.path} ({args.profile.value}, PIN {args.pin})")
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
    files = [CredentialFiles(certificate, key) for certificate, key, _ in pairs]
    pin = PinState.create(args.pin, max_tries=args.pin_tries)
    card_id = card_id_from_certificate(files[0].certificate)
    store = create(args.directory, NewCard(files, card_id, pin, atr=args.atr))
    _say(f"made card {store.path}")
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
            )
            if getattr(usage, name)
        ]
    except x509.ExtensionNotFound:
        names = ["(no key usage)"]
    until = certificate.not_valid_after_utc.date().isoformat()
    return f"{certificate.subject.rfc4514_string()}, until {until}, {' '.join(names)}"


def _info(store: CardStore) -> int:
    profile = store.load_profile()
    pin = store.load_state().pin
    serial = profile.card_id.hex()
    _say(f"card       {store.path}")
    _say(f"serial     {serial} (PKCS#11 token serial {serial[-16:]})")
    offered = " ".join(f"T={t}" for t in protocols(profile.atr))
    _say(f"ATR        {profile.atr.hex(' ').upper()} ({offered})")
    if pin.blocked:
        _say(f"PIN        BLOCKED (0 of {pin.max_tries} tries left; cacard unblock)")
    else:
        _say(f"PIN        {pin.tries_remaining} of {pin.max_tries} tries left")
    for index, held in enumerate(profile.credentials):
        label = OPENSC_LABELS[index] if index < len(OPENSC_LABELS) else f"CAC Cert {index + 1}"
        _say(f"PKI {index}      key 00:{index + 1:02x} {label!r}, {key_description(held.key)}")
        _say(f"           {_describe(held.certificate)}")
    for object_id, content in profile.data_objects.items():
        _say(f"data       {object_id.label}: {len(content)} bytes")
    return 0


def _unblock(args: argparse.Namespace) -> int:
    store = CardStore(args.directory)
    with store.lock():
        state = store.load_state()
        store.save_state(type(state)(state.pin.unblocked(args.pin)))
    _say(f"{store.path}: PIN unblocked" + (", new PIN set" if args.pin else ""))
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
    atr = CAC_ATR if args.atr is None else args.atr
    if kind == "nss":
        if not args.cert:
            raise UsageError("--nss: name its certificates with --cert NICKNAME")
        password = None
        if args.nss_password_file is not None:
            password = _read_secret(args.nss_password_file, "--nss-password-file")
        return NssDatabase(
            args.nss, tuple(args.cert), password, pin=args.pin, max_tries=pin_tries, atr=atr
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
        atr=atr,
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
