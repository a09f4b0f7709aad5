"""vscclient's ``-e`` grammar (libcacard's ``vcard_emul_options``).

Control byte: bit 0 decodes the payload as Latin-1 (every byte one character) instead of
UTF-8 with surrogate escapes (what Python makes of a non-UTF-8 ``argv``).

Bugs: any exception but :class:`daemons.emul_options.EmulOptionsError`; a result the grammar
cannot produce (a soft reader without certificates, blank or unstripped nicknames, a soft card
beside a passthru one, a db value with a quote or a newline, a card type whose name, in any
case, is not in the text).
"""

from __future__ import annotations

from typing import Final

from daemons.emul_options import (
    CARD_TYPES,
    EmulOptionsError,
    HardwareType,
    parse_emul_options,
)

from .common import check, split_input

MAX_LEN: Final = 4096


def fuzz_one(data: bytes) -> None:
    """Parse ``data`` as a ``-e`` string."""
    control, payload = split_input(data)
    text = (
        payload.decode("latin-1") if control & 0x01 else payload.decode("utf-8", "surrogateescape")
    )
    try:
        options = parse_emul_options(text)
    except EmulOptionsError:
        return
    check(options.db is None or not {'"', "\n"} & set(options.db), f"db={options.db!r}")
    if options.hw_type is HardwareType.PASSTHRU:
        check(not options.soft_readers, "a soft card beside a passthru card")
    for reader in options.soft_readers:
        check(bool(reader.certificates), f"soft reader {reader.name!r} without certificates")
        for nickname in reader.certificates:
            check(nickname != "" and nickname == nickname.strip(), f"nickname {nickname!r}")
        check(reader.slot == reader.slot.strip(), f"slot {reader.slot!r} not stripped")
        # A type comes from its name in the text, in any case.
        (card_type,) = [name for name, value in CARD_TYPES.items() if value is reader.applications]
        check(card_type in text.upper(), f"{reader.applications!r} from a text without it")


def seeds() -> dict[str, bytes]:
    """QEMU's documented examples and every item of the grammar."""
    examples = {
        "qemu-docs": 'db="sql:/etc/pki/nssdb" use_hw=no '
        "soft=(,Virtual Reader,CAC,,cert1,cert2,cert3)",
        "two-readers": "use_hw=no soft=(,A,CAC,,c1) ,soft=(My Token,B,cac,x,c2, c3 ,)",
        "hardware": "use_hw=removable hw_type=CAC hw_params=slot=1 nssemul",
        "passthru": "passthru\nuse_hw=yes\thw_type=passthru",
        "multiline": 'use_hw=false\n db="/tmp/db"\n'
        "soft=(,Virtual Reader,CAC,,id-cert, signing-cert ,)",
        "piv": "use_hw=no soft=(,PIV Reader,PIV,,auth-cert,sign-cert)",
        "cac-piv": "soft=(,A,cac+piv,,c1) soft=(,B,Piv,,c2) soft=(,C,cac,,c3)",
    }
    return {name: b"\x00" + text.encode() for name, text in examples.items()}
