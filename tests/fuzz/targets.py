"""The fuzz targets: one harness module each, imported only when asked for.

Importing lazily matters to atheris, which instruments the library modules a harness imports
only if they are imported inside ``atheris.instrument_imports()``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

CORPUS: Final = Path(__file__).parent / "corpus"

FuzzOne = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Target:
    """One fuzz target: a harness module exposing ``fuzz_one``, ``seeds`` and ``MAX_LEN``."""

    name: str
    module: str
    covers: str

    def harness(self) -> Harness:
        """Import the harness module (and with it the library code it exercises)."""
        module = importlib.import_module(self.module)
        return Harness(module.fuzz_one, module.seeds, module.MAX_LEN)

    @property
    def corpus_directory(self) -> Path:
        return CORPUS / self.name

    def corpus(self) -> list[bytes]:
        """The committed seed inputs, in file-name order ([] before ``make_corpus`` ran)."""
        directory = self.corpus_directory
        if not directory.is_dir():
            return []
        return [path.read_bytes() for path in sorted(directory.iterdir()) if path.is_file()]


@dataclass(frozen=True, slots=True)
class Harness:
    fuzz_one: FuzzOne
    seeds: Callable[[], dict[str, bytes]]
    max_len: int


TARGETS: Final = {
    target.name: target
    for target in (
        Target(
            "vscard",
            "tests.fuzz.vscard_harness",
            "vscard.Decoder, HostConnection, ClientConnection",
        ),
        Target(
            "ccid-codec",
            "tests.fuzz.ccid_harness",
            "ccid.codec: CommandDecoder, decode_command/response/interrupt; "
            "cardfloor.iso7816.atr.parse_atr",
        ),
        Target(
            "ccid-reader",
            "tests.fuzz.ccid_reader_harness",
            "ccid.CCIDReader and its ep0 ControlPipe, driven by host and card events",
        ),
        Target(
            "usbip",
            "tests.fuzz.usbip_harness",
            "ccid.usbip: decoders, USBIPServerConnection, USBIPClientConnection",
        ),
        Target(
            "apdu",
            "tests.fuzz.apdu_harness",
            "cardfloor.iso7816.apdu: CommandAPDU/Response.from_bytes; cacard.tlv decoders",
        ),
        Target(
            "card",
            "tests.fuzz.card_harness",
            "cacard.Card.transmit: APDU sequences against a generated CAC card",
        ),
        Target(
            "piv",
            "tests.fuzz.piv_harness",
            "cacard.Card.transmit: APDU sequences against a PIV card (RSA, P-256, P-384 keys; "
            "PIN, PUK and 9B management key known)",
        ),
        Target(
            "emul-options",
            "tests.fuzz.emul_options_harness",
            "daemons.emul_options.parse_emul_options (vscclient's -e grammar)",
        ),
    )
}
