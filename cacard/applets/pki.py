"""The PKI applet (GSC-IS 2.1 §5.3.3.4): one certificate and the private key behind it.

The host does all padding (PKCS#1 v1.5, PSS, OAEP) and sends a block exactly as long as the
modulus; the card answers ``block ** d mod n``. Sign and decrypt are the same instruction, 0x42,
chained with P1=80 for every chunk but the last (P1=00). OpenSC sends chunks of 240 bytes.
"""

from __future__ import annotations

from typing import Final

from cryptography.hazmat.primitives import serialization

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, success
from cardfloor.log import get_logger

from ..keys import CardKey, Credential, ECCardKey, KeyOperationError
from ..tlv import TLV
from .acr import ACRID, AccessRule
from .applet import ACA_AID, RID_GSC_IS, CardServices, Selection
from .cac import CACApplet, CardObject, PropertiesTag

log = get_logger(__name__)

INS_PRIVATE_KEY_OPERATION: Final = 0x42
P1_MORE_FOLLOWS: Final = 0x80
P1_LAST: Final = 0x00

#: AID prefix of PKI applet i: ``A0 00 00 00 79 01 0i``; its object is ``01 0i``.
PKI_APPLICATION: Final = 0x01
MAX_PKI_APPLETS: Final = 10


class PKITag:
    """Tags of a PKI object."""

    CERT_INFO: Final = 0x71
    CERTIFICATE: Final = 0x70
    MSCUID: Final = 0x72
    ERROR_DETECTION_CODE: Final = 0xFE


#: CertInfo value of an uncompressed certificate (bit 0 set would mean zlib-compressed).
CERT_INFO_UNCOMPRESSED: Final = 0x00
#: GSC-IS 2.1 Table 5-6: RSA with a private exponent.
ALGORITHM_RSA: Final = 0x06


def pki_aid(index: int) -> bytes:
    return RID_GSC_IS + bytes((PKI_APPLICATION, index))


class PKIApplet(CACApplet):
    """PKI applet ``index`` (0-9) holding ``credential``."""

    update_buffer_status = StatusWord.CONDITIONS_OF_USE_NOT_SATISFIED

    def __init__(self, index: int, credential: Credential) -> None:
        if not 0 <= index < MAX_PKI_APPLETS:
            raise ValueError(f"a CAC card has PKI applets 0..{MAX_PKI_APPLETS - 1}, not {index}")
        if isinstance(credential.key, ECCardKey):
            raise ValueError("a PKI applet holds an RSA key (OpenSC's CAC driver is RSA-only)")
        self.index = index
        self.credential = credential
        self.key: CardKey = credential.key
        self.modulus_size = (self.key.key_size + 7) // 8
        self._modulus = self.key.public_key.public_numbers().n
        der = credential.certificate.public_bytes(serialization.Encoding.DER)
        items = (
            TLV(PKITag.CERT_INFO, bytes((CERT_INFO_UNCOMPRESSED,))),
            TLV(PKITag.CERTIFICATE, der),
            TLV(PKITag.MSCUID, b""),
            TLV(PKITag.ERROR_DETECTION_CODE, b""),
        )
        # Algorithm, key size in units of 64 bits, private key and public key present.
        pki = bytes((ALGORITHM_RSA, (self.key.key_size // 64) & 0xFF, 0x01, 0x01))
        obj = CardObject.from_items(bytes((PKI_APPLICATION, index)), items, pki)
        super().__init__(pki_aid(index), f"PKI {index}", [obj])

    @property
    def object_id(self) -> bytes:
        return bytes((PKI_APPLICATION, self.index))

    def properties(self, *, long: bool = False) -> list[TLV]:
        items = super().properties()
        if long:
            items += [TLV(PropertiesTag.LONG_39, b"\x00"), TLV(PropertiesTag.LONG_ACA_AID, ACA_AID)]
        return items

    def object_rules(self, object_id: bytes) -> tuple[AccessRule, ...]:
        """Reading the certificate is free; using the key needs the PIN."""
        return (
            *super().object_rules(object_id),
            AccessRule(INS_PRIVATE_KEY_OPERATION, ACRID.PIN),
        )

    def process_other(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        if command.ins != INS_PRIVATE_KEY_OPERATION:
            return super().process_other(command, selection, card)
        chain = selection.chain
        if command.p2 != 0x00 or command.p1 not in (P1_MORE_FOLLOWS, P1_LAST):
            chain.clear()
            return status(StatusWord.INCORRECT_P1_P2)
        if not card.pin_verified:
            chain.clear()
            return status(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
        if len(chain) + len(command.data) > self.modulus_size:
            chain.clear()
            return status(StatusWord.DATA_INVALID)
        chain += command.data
        if command.p1 == P1_MORE_FOLLOWS:
            return status(StatusWord.SUCCESS)
        block = bytes(chain)
        chain.clear()
        if len(block) != self.modulus_size:
            return status(StatusWord.DATA_INVALID)
        if int.from_bytes(block, "big") >= self._modulus:
            return status(StatusWord.INCORRECT_DATA)
        try:
            result = self.key.private_operation(block)
        except KeyOperationError as error:
            log.warning("cacard.key_operation_failed", applet=self.name, error=str(error))
            return status(StatusWord.NO_PRECISE_DIAGNOSIS)
        return success(result)
