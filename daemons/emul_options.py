"""libcacard's ``-e`` option string (``vcard_emul_options``), parsed strictly.

The grammar, as vscclient and QEMU's ``ccid-card-emulated`` write it::

    db="sql:/etc/pki/nssdb" use_hw=no soft=(,Virtual Reader,CAC,,cert1,cert2,cert3)

Items are separated by whitespace (a leading comma before an item is skipped). Where the C
parser silently falls back to defaults or misreads a value, this one raises
:class:`EmulOptionsError` naming the item and the value:

- ``use_hw=false`` means *no* here (the C code reads any value not starting with 0/N/n/F as yes,
  and ``false`` starts with a lowercase f); unknown values are an error.
- ``hw_type=`` works anywhere, not only as the last item.
- a ``soft=(...)`` without its closing parenthesis is an error (it crashes the C code).
- the card type of ``soft=(...)`` is ``CAC`` (libcacard's only one), ``PIV`` or ``CAC+PIV``, in
  any ASCII case: the card's :class:`~cacard.profile.Applications`. Anything else is an error.
- certificate nicknames are stripped of surrounding blanks; empty ones (from ``-c``'s trailing
  comma) are ignored, as in C.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, replace
from typing import Final

from cacard.profile import Applications

DEFAULT_DB = "/etc/pki/nssdb"


class EmulOptionsError(ValueError):
    """The ``-e`` string is malformed; the message names the item and the value."""


class UseHardware(enum.Enum):
    NO = "no"
    YES = "yes"
    #: Any removable hardware slot.
    REMOVABLE = "removable"


class HardwareType(enum.Enum):
    CAC = "CAC"
    PASSTHRU = "PASSTHRU"


#: The card types of ``soft=(...)``, upper-cased: libcacard's ``CAC`` and ours with PIV.
CARD_TYPES: Final = {
    "CAC": Applications.CAC,
    "PIV": Applications.PIV,
    "CAC+PIV": Applications.CAC_PIV,
}


@dataclass(frozen=True)
class SoftReader:
    """One ``soft=(slot,reader name,TYPE,params,cert1,...)``: a reader with an emulated card."""

    slot: str
    """NSS token name; empty means the internal key slot."""
    name: str
    certificates: tuple[str, ...]
    """NSS nicknames of the card's certificates (with their keys), in applet order."""
    params: str = ""
    applications: Applications = Applications.CAC
    """The card type: CAC (libcacard's), PIV or CAC+PIV."""


@dataclass(frozen=True)
class EmulOptions:
    db: str | None = None
    """NSS database (``sql:DIR`` or ``DIR``); None means libcacard's default."""
    use_hw: UseHardware = UseHardware.YES
    hw_type: HardwareType = HardwareType.CAC
    hw_params: str | None = None
    soft_readers: tuple[SoftReader, ...] = ()

    @property
    def database(self) -> str:
        return self.db if self.db is not None else DEFAULT_DB


_SEPARATORS = re.compile(r"[\s,]*")
_WORD = re.compile(r"\S*")
_DB = re.compile(r'db="([^"\n]*)"')

_USE_HW = {
    "yes": UseHardware.YES,
    "true": UseHardware.YES,
    "1": UseHardware.YES,
    "y": UseHardware.YES,
    "no": UseHardware.NO,
    "false": UseHardware.NO,
    "0": UseHardware.NO,
    "n": UseHardware.NO,
    "removable": UseHardware.REMOVABLE,
}


def parse_emul_options(text: str) -> EmulOptions:
    """Parse a ``-e`` string into :class:`EmulOptions`."""
    options = EmulOptions()
    position = 0
    while True:
        separators = _SEPARATORS.match(text, position)
        assert separators is not None  # [\s,]* matches everywhere
        position = separators.end()
        if position >= len(text):
            break
        options, position = _parse_item(text, position, options)
    if options.hw_type is HardwareType.PASSTHRU and options.soft_readers:
        raise EmulOptionsError("cannot use a soft card and a passthru card simultaneously")
    return options


def _word(text: str, position: int) -> tuple[str, int]:
    match = _WORD.match(text, position)
    assert match is not None  # \S* matches everywhere
    return match.group(), match.end()


def _parse_item(text: str, position: int, options: EmulOptions) -> tuple[EmulOptions, int]:
    rest = text[position:]
    if rest.startswith("db="):
        if options.db is not None:
            raise EmulOptionsError(f"db is defined twice: already {options.db!r}")
        match = _DB.match(text, position)
        if match is None:
            raise EmulOptionsError(
                f'db needs a quoted value, as in db="sql:DIR": {_word(text, position)[0]!r}'
            )
        return replace(options, db=match.group(1)), match.end()
    if rest.startswith("soft="):
        reader, end = _parse_soft(text, position + len("soft="))
        return replace(options, soft_readers=(*options.soft_readers, reader)), end
    word, end = _word(text, position)
    key, _, value = word.partition("=")
    if key == "use_hw" and "=" in word:
        use_hw = _USE_HW.get(value.lower())
        if use_hw is None:
            raise EmulOptionsError(f"use_hw must be yes, no or removable, not {value!r}")
        return replace(options, use_hw=use_hw), end
    if key == "hw_type" and "=" in word:
        try:
            hw_type = HardwareType(value.upper())
        except ValueError:
            raise EmulOptionsError(f"hw_type must be CAC or PASSTHRU, not {value!r}") from None
        return replace(options, hw_type=hw_type), end
    if key == "hw_params" and "=" in word:
        if options.hw_params is not None:
            raise EmulOptionsError(f"hw_params is defined twice: already {options.hw_params!r}")
        return replace(options, hw_params=value), end
    if word == "nssemul":
        return replace(options, use_hw=UseHardware.YES, hw_type=HardwareType.CAC), end
    if word == "passthru":
        return replace(options, use_hw=UseHardware.YES, hw_type=HardwareType.PASSTHRU), end
    raise EmulOptionsError(f"unknown smartcard specification {word!r}")


def _parse_soft(text: str, position: int) -> tuple[SoftReader, int]:
    if not text.startswith("(", position):
        raise EmulOptionsError(
            f"soft= needs (slot,reader name,type,params,certs...): {_word(text, position)[0]!r}"
        )
    close = text.find(")", position)
    if close < 0:
        raise EmulOptionsError(f"soft= is missing its closing parenthesis: {text[position:]!r}")
    fields = text[position + 1 : close].split(",")
    if len(fields) < 5:
        raise EmulOptionsError(
            f"soft=({text[position + 1 : close]}) needs slot, reader name, type, params and at "
            "least one certificate"
        )
    slot, name, card_type, params, *certificates = fields
    # ASCII case only: str.upper() makes I of a dotless i, and P-dotless i-V is no PIV.
    stripped = card_type.strip()
    applications = CARD_TYPES.get(stripped.upper()) if stripped.isascii() else None
    if applications is None:
        raise EmulOptionsError(
            f"invalid smartcard type {card_type!r} in soft=(...): CAC, PIV or CAC+PIV"
        )
    nicknames = tuple(c.strip() for c in certificates if c.strip())
    if not nicknames:
        raise EmulOptionsError(f"soft=({text[position + 1 : close]}) names no certificate")
    return SoftReader(slot.strip(), name, nicknames, params, applications), close + 1


def soft_reader_for_nicknames(
    nicknames: list[str], applications: Applications = Applications.CAC
) -> SoftReader:
    """What vscclient builds from its ``-c NICK`` options: one "Virtual Reader" with those certs."""
    return SoftReader("", "Virtual Reader", tuple(n for n in nicknames if n), "", applications)
