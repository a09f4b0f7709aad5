"""The card's ATR (Answer To Reset): libcacard's CAC ATR, the same card offering T=1 as well,
and the check that an ATR given by hand must pass.

**Why offer T=1.** libcacard's ATR announces T=0 only (no TD1). Under T=0, OpenSC drops Le from
every case-4 command (``apdu.c``), so each command that returns data costs two exchanges: the
command, answered ``61xx``, then GET RESPONSE. Under T=1 it sends Le, and a READ BUFFER, GET
PROPERTIES or SELECT with FCI is one exchange. Through vpcd, OpenSC's detection, login and one
RSA-2048 signature took 56 APDUs with :data:`CAC_ATR_T1` and 81 with :data:`CAC_ATR`.

What T=1 does *not* bring to a CAC card: extended APDUs or responses over 256 bytes. OpenSC's
CAC driver builds only short APDUs (``cac_apdu_io`` in ``card-cac.c``), whatever the protocol,
and chains SIGN/DECRYPT input in 240-byte pieces; a 2048-bit result still arrives as ``61 00``
and one GET RESPONSE.

**Why no ATR announces extended length.** ISO/IEC 7816-4 §8.1.1.2.7 lets the historical
bytes say "extended Lc and Le fields" (card capabilities, third software function byte), but
OpenSC 0.23 does not read that bit: ``sc_connect_card`` (``card.c``) leaves
``SC_CARD_CAP_APDU_EXT`` to the card driver, and without it ``sc_detect_apdu_cse``
(``apdu.c``) sends short APDUs, whatever the reader (our CCID reader's extended level gives
OpenSC 65,536-byte reader limits: ``reader-pcsc.c``, ``part10_detect_max_data``). Neither the
PIV driver, which builds every command as a short case 3 or 4 APDU (``card-piv.c``,
``piv_general_io``), nor the CAC driver sets it. So an ATR saying so would change no exchange;
a PIV certificate of N bytes still takes one GET DATA and ceil(N / 256) - 1 GET RESPONSEs.

**How it stays safe.** :data:`CAC_ATR_T1` keeps TA1, TB1, TC1 and the historical bytes of
:data:`CAC_ATR` and adds TD1 = ``80`` (T=0, offered first, so it stays the default protocol) and
TD2 = ``31`` (T=1, with TA3 = ``FE``: IFSC 254, TB3 = ``45``: BWI 4, CWI 5), then TCK. pcsc-lite
tries T=1 first when the card offers it (``PHSetProtocol``): vpcd accepts it, and our CCID
reader announces both protocols. A reader with T=0 only, like QEMU's usb-ccid, makes libccid
refuse the PTS (``IFD_ERROR_NOT_SUPPORTED``) and pcsc-lite falls back to the default T=0; QEMU's
own default ATR (``3B D5 18 FF 80 91 FE 1F ...``) is built the same way, and QEMU's
ccid-card-passthru accepts this one. OpenSC's CAC driver has no ATR table; it finds the card by
its applets, so the card is a CAC with either ATR. Only PIV's table lists libcacard's ATR ("G+D
dual CAC"), and PIV probes the card either way and gets clean failures.
"""

from __future__ import annotations

from typing import Final

from cardfloor.iso7816.atr import ATRFormatError, parse_atr

#: libcacard's CAC ATR: TA1 18, TB1 00, TC1 00, T=0 only, historical bytes "sfte cd144".
CAC_ATR: Final = bytes.fromhex("3B7A18000073667465206364313434")
#: :data:`CAC_ATR` offering T=1 as well (T=0 stays the default): see the module docstring.
CAC_ATR_T1: Final = bytes.fromhex("3BFA1800008031FE4573667465206364313434FA")
#: A PIV card's: :data:`CAC_ATR_T1`'s structure (T=0 first, then T=1) with historical bytes
#: "vscard PIV". yubico-piv-tool connects with T=1 only, so a PIV card must offer it; Windows
#: and macOS find PIV by SELECT, not by ATR.
PIV_ATR: Final = bytes.fromhex("3BFA1800008031FE457673636172642050495696")
#: The ATRs known by name (``cacard new --atr NAME``).
NAMED_ATRS: Final = {"cac": CAC_ATR, "cac-t1": CAC_ATR_T1, "piv": PIV_ATR}


class ATRError(ValueError):
    """An ATR a card cannot have; ``value`` is what was given."""

    def __init__(self, reason: str, *, value: str) -> None:
        super().__init__(f"{reason}: atr={value}")
        self.reason = reason
        self.field = "atr"
        self.value = value


def protocols(atr: bytes) -> tuple[int, ...]:
    """The protocols ``atr`` offers, in its order (T=0 alone when it has no TD1).

    ``atr`` must have passed :func:`atr_problem`.
    """
    return parse_atr(atr).transmission_protocols


def preferred_protocol(atr: bytes) -> int:
    """The protocol a reader that offers T=0 and T=1 runs with a card of ``atr``: 1 when the
    card offers T=1 (pcsc-lite tries T=1 first, ``PHSetProtocol``), else 0.

    ``atr`` must have passed :func:`atr_problem`.
    """
    return 1 if 1 in protocols(atr) else 0


def atr_problem(atr: bytes) -> str | None:
    """Why a card must not have ``atr``, or None when it may.

    The structure must be whole (:func:`cardfloor.iso7816.atr.parse_atr`: at most 33 bytes,
    every byte T0 and the TDi announce), and when anything but T=0 is announced the check byte
    TCK must be there and make the XOR of T0..TCK zero (ISO/IEC 7816-3 §8.2.5).
    """
    try:
        parsed = parse_atr(atr)
    except ATRFormatError as error:
        return error.reason
    if not parsed.needs_tck:
        return None
    if parsed.tck is None:
        return "an ATR that announces a protocol other than T=0 needs a TCK byte"
    if parsed.tck != parsed.tck_expected:
        return (
            f"TCK=0x{parsed.tck:02X} is wrong, 0x{parsed.tck_expected:02X} makes T0..TCK XOR to 0"
        )
    if parsed.trailing:
        return f"{len(parsed.trailing)} bytes follow TCK"
    return None


def atr_from_name(text: str) -> bytes:
    """The ATR ``text`` names: ``cac``, ``cac-t1`` or hex digits (spaces and colons allowed)."""
    named = NAMED_ATRS.get(text.strip().lower())
    if named is not None:
        return named
    try:
        atr = bytes.fromhex(text.replace(":", " "))
    except ValueError:
        raise ATRError(
            f"neither a known name ({', '.join(NAMED_ATRS)}) nor hex digits", value=text
        ) from None
    if (problem := atr_problem(atr)) is not None:
        raise ATRError(problem, value=atr.hex().upper())
    return atr
