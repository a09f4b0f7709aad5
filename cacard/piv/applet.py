"""The PIV card application (NIST SP 800-73-4 Part 2 card edge) as a sans-IO applet.

Commands: SELECT (by the AID or a right-truncated one, through :meth:`PIVApplet.selected_by`),
GET DATA, PUT DATA, VERIFY, CHANGE REFERENCE DATA, RESET RETRY COUNTER, GENERAL AUTHENTICATE
and GENERATE ASYMMETRIC KEY PAIR (Part 2 §3.1-§3.3), with command chaining (CLA ``10``) for
GENERAL AUTHENTICATE and PUT DATA. Response data longer than Le goes through the card's
GET RESPONSE (``61xx``).

The application PIN (``80``) is either the applet's own, with a retry counter in memory only,
or (``pin=None``) the card's PIN itself: one retry counter, one verified state and the card's
persistence, so VERIFY ``00`` and ``80`` open the same keys, as on a CAC+PIV card with one PIN.
The PUK (``81``) is always the applet's own. Keys are :class:`~cacard.keys.CardKey` (RSA) or
:class:`~cacard.keys.ECCardKey` (P-256, P-384), wherever they live. What the applet changes
that a card keeps (a generated key, a written object, the PUK and its counter) is reported to
``on_change`` as a :data:`PIVChange` before the command is answered: persist it there.

YubiKey's own instructions (GET VERSION ``FD``, GET SERIAL ``F8``, GET METADATA ``F7``, SET
MANAGEMENT KEY ``FF``, RESET ``FB``, SET PIN RETRIES ``FA``, ATTEST ``F9``) are not PIV's: the
card answers ``6D00``. yubico-piv-tool reads the version when it connects and goes on without
it (lib/ykpiv.c, _ykpiv_select_application); it sends the others only for YubiKey-only actions.
"""

from __future__ import annotations

import datetime
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Final, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cardfloor.iso7816.apdu import CommandAPDU, Response, StatusWord, status, success
from cardfloor.iso7816.instructions import (
    INS_CHANGE_REFERENCE_DATA,
    INS_GENERAL_AUTHENTICATE,
    INS_GENERATE_ASYMMETRIC_KEY_PAIR,
    INS_GET_DATA_ODD,
    INS_PUT_DATA_ODD,
    INS_RESET_RETRY_COUNTER,
    INS_VERIFY,
)
from cardfloor.log import get_logger

from ..applets.applet import Applet, CardServices, Selection
from ..keys import AnyCardKey, CardKey, ECCardKey, KeyOperationError
from ..pin import MAX_PIN_LENGTH, PIN_PAD, SALT_SIZE, Pin, PinState
from ..software import software_key
from ..tlv import ber_tlv
from .ber import PIVFormatError, decode, decode_fields, decode_one, encode, require
from .management_key import (
    DEFAULT_MANAGEMENT_KEY,
    DYNAMIC_AUTHENTICATION_TEMPLATE,
    ManagementKey,
    ManagementKeyAuthentication,
    parse_template,
)
from .objects import (
    CHUID,
    DATA_TAG,
    PIV_AID,
    PIV_RID,
    Algorithm,
    ApplicationPropertyTemplate,
    CardCapabilityContainer,
    CertificateObject,
    DiscoveryObject,
    KeyHistory,
    KeyReference,
    ObjectTag,
    PinReference,
    PinUsagePolicy,
    get_data_response,
)

log = get_logger(__name__)

#: P1 P2 of GET DATA and PUT DATA: the current application's data objects (Part 2 §3.1.2).
P1P2_DATA_OBJECT: Final = (0x3F, 0xFF)
#: CLA bits this applet leaves to the card: secure messaging and any class above the first
#: interindustry one (the card refuses those itself).
_CLA_SECURE_MESSAGING: Final = 0x0C
_CLA_CHAINING: Final = 0x10
_FIRST_PROPRIETARY_OR_FURTHER: Final = 0x20
#: The most command data a chain may collect: a 4 KiB certificate object and its TLVs fit.
MAX_CHAIN: Final = 16 * 1024
_CHAINABLE: Final = frozenset({INS_GENERAL_AUTHENTICATE, INS_PUT_DATA_ODD})
#: PIV PINs are 6 to 8 digits (SP 800-73-4 Part 2 §2.4.3), padded with FF to 8 bytes.
MIN_PIV_PIN_LENGTH: Final = 6

#: Algorithm of each key size and curve this applet holds.
_RSA_ALGORITHMS: Final = {
    1024: Algorithm.RSA_1024,
    2048: Algorithm.RSA_2048,
    3072: Algorithm.RSA_3072,
    4096: Algorithm.RSA_4096,
}
_EC_ALGORITHMS: Final = {"secp256r1": Algorithm.ECC_P256, "secp384r1": Algorithm.ECC_P384}
_CURVES: Final[dict[Algorithm, ec.EllipticCurve]] = {
    Algorithm.ECC_P256: ec.SECP256R1(),
    Algorithm.ECC_P384: ec.SECP384R1(),
}
_KEY_REFERENCES: Final = frozenset(KeyReference)
# KeyReference members GENERAL AUTHENTICATE compares P2 with, as plain ints: compiled
# (docs/compiled.md), a comparison with a literal is a machine compare, one with an enum member
# a lookup and a rich comparison on every signature.
_CARD_MANAGEMENT: Final = 0x9B
_DIGITAL_SIGNATURE: Final = 0x9C
_CARD_AUTHENTICATION: Final = 0x9E
#: Keys that may do ECDH (key establishment keys: SP 800-73-4 Part 1 §3.3).
_KEY_ESTABLISHMENT: Final = frozenset(
    ref
    for ref in KeyReference
    if ref is KeyReference.KEY_MANAGEMENT or ref < KeyReference.PIV_AUTHENTICATION
)
_ASYMMETRIC_KEYS: Final = frozenset(KeyReference) - {KeyReference.CARD_MANAGEMENT}

#: A private key the applet generates (GENERATE ASYMMETRIC KEY PAIR), held by ``cryptography``.
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class PIVKeyError(ValueError):
    """A key the PIV applet cannot hold; ``field`` names what is wrong, ``value`` its value."""

    def __init__(self, reason: str, *, field: str, value: object) -> None:
        super().__init__(f"{reason}: {field}={value!r}")
        self.field = field
        self.value = value


@dataclass(frozen=True, slots=True)
class SlotKey:
    """The card key of one PIV key reference and the DER of its certificate, if any."""

    key: AnyCardKey
    certificate: bytes | None = None


@dataclass(frozen=True, slots=True)
class KeyGenerated:
    """GENERATE ASYMMETRIC KEY PAIR put a new ``private_key`` at ``reference``."""

    reference: KeyReference
    private_key: PrivateKey


@dataclass(frozen=True, slots=True)
class ObjectWritten:
    """PUT DATA wrote ``content`` to the object ``tag`` (``None``: deleted it)."""

    tag: ObjectTag
    content: bytes | None


@dataclass(frozen=True, slots=True)
class PukChanged:
    """The PUK or its retry counter changed: ``state`` is the new one."""

    state: PinState


#: What the applet reports to its ``on_change``.
PIVChange: TypeAlias = KeyGenerated | ObjectWritten | PukChanged
ChangeSink = Callable[[PIVChange], None]


@dataclass(frozen=True, slots=True)
class _Key:
    algorithm: Algorithm
    #: The key by kind, decided once: an isinstance() of a runtime-checkable protocol walks
    #: its members on every call, which cost a third of a P-256 signature's time.
    ec_key: ECCardKey | None
    rsa_key: CardKey | None
    #: The bytes of a hash the EC key signs (its curve's size).
    ec_size: int
    #: ``algorithm`` as a plain int, which P1 is compared with on every operation.
    algorithm_id: int

    @property
    def public_key(self) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        if self.ec_key is not None:
            return self.ec_key.public_key
        assert self.rsa_key is not None
        return self.rsa_key.public_key


def key_algorithm(key: AnyCardKey) -> Algorithm:
    """The PIV algorithm identifier of ``key``; :class:`PIVKeyError` when PIV has none."""
    if isinstance(key, ECCardKey):
        algorithm = _EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise PIVKeyError("curve not supported", field="curve", value=key.curve.name)
        return algorithm
    size = key.key_size
    rsa_algorithm = _RSA_ALGORITHMS.get(size)
    if rsa_algorithm is None:
        raise PIVKeyError("RSA key size not supported", field="key_size", value=size)
    return rsa_algorithm


def _load_key(key: AnyCardKey) -> _Key:
    algorithm = key_algorithm(key)
    if isinstance(key, ECCardKey):
        return _Key(algorithm, key, None, (key.curve.key_size + 7) // 8, int(algorithm))
    return _Key(algorithm, None, key, 0, int(algorithm))


def _ecdsa_input(size: int, block: bytes) -> bytes:
    """What a key on a curve of ``size`` bytes signs for the hash ``block``: a shorter hash
    left-padded with zeros to the curve's size, the same integer ECDSA takes from it (FIPS
    186-5 §6.4.1), so a SHA-256 hash signs on a P-384 key, as OpenSC's PIV driver sends it
    for CKM_ECDSA_SHA256 (and any CKM_ECDSA input as it is: OpenSC, card-piv.c,
    piv_compute_signature). Longer input is refused, as yubico-piv-tool refuses it
    (lib/ykpiv.c, _general_authenticate)."""
    if not block or len(block) > size:
        return block  # sign_digest refuses it
    return block.rjust(size, b"\x00")


# -- FASC-N (TIG SCEPACS v2.3 §6): 40 five-bit characters, 4 data bits LSB first + odd parity --
_SS: Final = 0xB
_FS: Final = 0xD
_ES: Final = 0xF


def fasc_n(
    agency: str = "9999",
    system: str = "9999",
    credential: str = "999999",
    person: str = "9999999999",
) -> bytes:
    """An encoded FASC-N; the defaults are the "non-federal issuer" test values."""
    digits = [int(c) for c in agency + system + credential]
    values = (
        [_SS, *digits[:4], _FS, *digits[4:8], _FS, *digits[8:14], _FS, 1, _FS, 1, _FS]
        + [int(c) for c in person]
        + [1, 0, 0, 0, 0, 1, _ES]  # organizational category, organization id, association
    )
    lrc = 0
    for value in values:
        lrc ^= value
    bits = ""
    for value in [*values, lrc]:
        data = "".join(str((value >> i) & 1) for i in range(4))
        bits += data + ("0" if data.count("1") % 2 else "1")
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def _pin_field(data: bytes) -> bytes | None:
    """The digits of one 8-byte PIN field (6-8 digits, then FF), or None when malformed."""
    if len(data) != MAX_PIN_LENGTH:
        return None
    pin = data.rstrip(bytes((PIN_PAD,)))
    return pin if len(pin) >= MIN_PIV_PIN_LENGTH and pin.isdigit() else None


_TEMPLATE_HEADER: Final = struct.Struct(">BBBB").pack


def _template(tag: int, value: bytes) -> bytes:
    size = len(value)
    if size < 0x7E:  # both lengths one byte: every ECDSA signature and ECDH secret here
        return _TEMPLATE_HEADER(DYNAMIC_AUTHENTICATION_TEMPLATE, size + 2, tag, size) + value
    return ber_tlv(DYNAMIC_AUTHENTICATION_TEMPLATE, ber_tlv(tag, value))


@dataclass(slots=True)
class PIVSelection(Selection):
    """A PIV selection; ``chain_header`` is (INS, P1, P2) of the chain ``chain`` collects."""

    chain_header: tuple[int, int, int] | None = None


class PIVApplet(Applet):
    """The PIV card application with ``keys`` by key reference, the application ``pin`` (its
    own, in memory; ``None``: the card's PIN) and the ``puk`` (in memory). ``random`` supplies
    the CHUID's GUID, the card identifier, salts and the 9B challenges.
    """

    def __init__(
        self,
        *,
        pin: PinState | None,
        puk: PinState,
        keys: Mapping[KeyReference, SlotKey] | None = None,
        objects: Mapping[ObjectTag, bytes] | None = None,
        management_key: ManagementKey = DEFAULT_MANAGEMENT_KEY,
        random: Callable[[int], bytes] = os.urandom,
        label: str | None = None,
        expiration: datetime.date = datetime.date(2049, 12, 31),
        on_change: ChangeSink | None = None,
    ) -> None:
        super().__init__(PIV_AID, "PIV")
        self._random = random
        self._on_change = on_change
        self._own_pin = None if pin is None else Pin(pin)
        self._puk = Pin(puk, self._puk_changed)
        self._management = ManagementKeyAuthentication(management_key, random)
        self._label = label
        #: VERIFY of the PIN just succeeded: the next command may use the PIN-always key 9C.
        self._pin_always = False
        # Keyed by KeyReference members; ints look them up (an IntEnum hashes as its value).
        self._keys: dict[int, _Key] = {}
        self._objects: dict[ObjectTag, bytes] = {
            ObjectTag.CARD_CAPABILITY_CONTAINER: CardCapabilityContainer(
                bytes.fromhex("A000000079") + b"\x01\x02" + random(14)
            ).to_bytes(),
            ObjectTag.CHUID: CHUID(fasc_n(), random(16), expiration).to_bytes(),
            ObjectTag.DISCOVERY: self._discovery().to_bytes(),
            ObjectTag.KEY_HISTORY: KeyHistory().to_bytes(),
        }
        for reference, slot in (keys or {}).items():
            if reference not in _ASYMMETRIC_KEYS:
                raise PIVKeyError("not an asymmetric key reference", field="key", value=reference)
            reference = KeyReference(reference)
            self._keys[reference] = _load_key(slot.key)
            tag = reference.certificate_object
            if slot.certificate is not None and tag is not None:
                self._objects[tag] = CertificateObject(slot.certificate).to_bytes()
        # Objects the card kept from earlier PUT DATA win over the ones made here; an empty
        # one is one PUT DATA deleted.
        for tag, content in (objects or {}).items():
            if content:
                self._objects[tag] = content
            else:
                self._objects.pop(tag, None)

    # -- Applet -----------------------------------------------------------------------------

    def fci(self) -> bytes:
        """The application property template (SP 800-73-4 Part 2 §3.1.1)."""
        return ApplicationPropertyTemplate(self._label).to_bytes()

    def select(self) -> PIVSelection:
        return PIVSelection(self)

    def selected_by(self, aid: bytes) -> bool:
        """The AID or any right-truncation of it down to the RID (Part 2 §3.1.1)."""
        return len(aid) >= len(PIV_RID) and PIV_AID.startswith(aid)

    def reset(self) -> None:
        if self._own_pin is not None:
            self._own_pin.reset()  # the card resets its own PIN
        self._puk.reset()
        self._management.reset()
        self._pin_always = False

    def _discovery(self) -> DiscoveryObject:
        """What the PIN usage policy says (SP 800-73-4 Part 1 Appendix A).

        With the card's PIN, VERIFY ``00`` satisfies the PIV access rules too, so both bits are
        set; the application PIN stays primary (``10``) so hosts keep sending ``80``, the PIN
        every PIV middleware knows (OpenSC switches to ``00`` only when told ``20``).
        """
        if self._own_pin is not None:
            return DiscoveryObject()
        both = PinUsagePolicy.APPLICATION_PIN | PinUsagePolicy.GLOBAL_PIN
        return DiscoveryObject(both, primary_pin=0x10)

    def _pin(self, card: CardServices) -> Pin:
        """The application PIN: the applet's own, or the card's (fetched per command, since
        the card replaces it on RESET RETRY COUNTER)."""
        return card.pin if self._own_pin is None else self._own_pin

    def public_key(self, reference: KeyReference) -> rsa.RSAPublicKey | ec.EllipticCurvePublicKey:
        """The public half of the key at ``reference`` (KeyError when the slot is empty)."""
        return self._keys[reference].public_key

    @property
    def puk(self) -> PinState:
        """The PUK and its retry counter."""
        return self._puk.state

    def _puk_changed(self, state: PinState) -> None:
        self._report(PukChanged(state))

    def _report(self, change: PIVChange) -> None:
        if self._on_change is not None:
            self._on_change(change)

    def process(
        self, command: CommandAPDU, selection: Selection, card: CardServices
    ) -> Response | None:
        # PIN-always: only the command right after VERIFY may use key 9C; parts of a chain
        # are not commands of their own.
        armed, self._pin_always = self._pin_always, False
        cla = command.cla
        if cla >= _FIRST_PROPRIETARY_OR_FURTHER or cla & _CLA_SECURE_MESSAGING:
            return None
        if not isinstance(selection, PIVSelection):
            return status(StatusWord.NO_PRECISE_DIAGNOSIS)
        if cla & _CLA_CHAINING:
            self._pin_always = armed
            return self._collect(command, (command.ins, command.p1, command.p2), selection)
        data = command.data
        if selection.chain_header is not None:
            if selection.chain_header == (command.ins, command.p1, command.p2):
                data = bytes(selection.chain) + data
            selection.chain.clear()
            selection.chain_header = None
        return self._dispatch(command, data, armed, card)

    # -- dispatch ---------------------------------------------------------------------------

    def _collect(
        self, command: CommandAPDU, header: tuple[int, int, int], selection: PIVSelection
    ) -> Response:
        if command.ins not in _CHAINABLE:
            return status(StatusWord.COMMAND_CHAINING_NOT_SUPPORTED)
        if selection.chain_header != header:
            # A chain for another command starts over.
            selection.chain.clear()
            selection.chain_header = header
        if len(selection.chain) + len(command.data) > MAX_CHAIN:
            selection.chain.clear()
            selection.chain_header = None
            return status(StatusWord.WRONG_LENGTH)
        selection.chain += command.data
        return status(StatusWord.SUCCESS)

    def _dispatch(
        self, command: CommandAPDU, data: bytes, armed: bool, card: CardServices
    ) -> Response | None:
        ins = command.ins
        if ins == INS_GET_DATA_ODD:
            return self._get_data(command, data)
        if ins == INS_GENERAL_AUTHENTICATE:
            return self._general_authenticate(command.p1, command.p2, data, armed, card)
        if ins == INS_PUT_DATA_ODD:
            return self._put_data(command, data)
        if ins == INS_GENERATE_ASYMMETRIC_KEY_PAIR:
            return self._generate(command, data)
        if ins == INS_VERIFY:
            return self._verify(command, card)
        if ins == INS_CHANGE_REFERENCE_DATA:
            return self._change(command, card)
        if ins == INS_RESET_RETRY_COUNTER:
            return self._reset_retry_counter(command, card)
        return None

    # -- data objects -----------------------------------------------------------------------

    def _get_data(self, command: CommandAPDU, data: bytes) -> Response:
        if (command.p1, command.p2) != P1P2_DATA_OBJECT:
            return status(StatusWord.INCORRECT_P1_P2)
        try:
            tag = ObjectTag.from_tag_list(data)
        except PIVFormatError:
            return status(StatusWord.INCORRECT_DATA)
        content = self._objects.get(tag)
        if content is None:
            return status(StatusWord.FILE_NOT_FOUND)
        return success(get_data_response(tag, content))

    def _put_data(self, command: CommandAPDU, data: bytes) -> Response:
        if (command.p1, command.p2) != P1P2_DATA_OBJECT:
            return status(StatusWord.INCORRECT_P1_P2)
        if not self._management.authenticated:
            return status(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
        try:
            items = decode(data)
            if len(items) != 2:
                raise PIVFormatError("PUT DATA is 5C tag, then the object", field="items", value=0)
            tag = ObjectTag.from_tag_list(items[0].to_bytes())
        except PIVFormatError:
            return status(StatusWord.INCORRECT_DATA)
        body = items[1]
        # The Discovery Object is written as its own 7E template; every other inside 53.
        expected = ObjectTag.DISCOVERY if tag is ObjectTag.DISCOVERY else DATA_TAG
        if body.tag != expected:
            return status(StatusWord.INCORRECT_DATA)
        content = body.to_bytes() if tag is ObjectTag.DISCOVERY else body.value
        # An empty 53 deletes the object, as card management tools expect.
        if not self._kept(ObjectWritten(tag, content or None)):
            return status(StatusWord.MEMORY_FAILURE)
        if content:
            self._objects[tag] = content
        else:
            self._objects.pop(tag, None)
        return status(StatusWord.SUCCESS)

    def _kept(self, change: KeyGenerated | ObjectWritten) -> bool:
        """Report ``change``; False when it could not be kept (the card answers 6581)."""
        try:
            self._report(change)
        except Exception as error:
            log.error("cacard.piv_persist_failed", change=type(change).__name__, error=repr(error))
            return False
        return True

    # -- PIN and PUK ------------------------------------------------------------------------

    def _verify(self, command: CommandAPDU, card: CardServices) -> Response | None:
        if command.p2 == PinReference.GLOBAL_PIN:
            return None  # the card's own PIN, in its ISO layer
        if command.p2 != PinReference.APPLICATION_PIN:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        if command.data and _pin_field(command.data) is None:
            return status(StatusWord.INCORRECT_DATA)
        answer = self._pin(card).verify(replace(command, p2=0))
        if command.data and answer.sw == StatusWord.SUCCESS:
            self._pin_always = True
        return answer

    def _change(self, command: CommandAPDU, card: CardServices) -> Response | None:
        if command.p2 == PinReference.GLOBAL_PIN:
            return None
        if command.p2 == PinReference.APPLICATION_PIN:
            target = self._pin(card)
        elif command.p2 == PinReference.PUK:
            target = self._puk
        else:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        if command.p1 != 0x00:
            return status(StatusWord.INCORRECT_P1_P2)
        fields = command.data[:MAX_PIN_LENGTH], command.data[MAX_PIN_LENGTH:]
        if any(_pin_field(field) is None for field in fields):
            return status(StatusWord.INCORRECT_DATA)
        answer = target.change(replace(command, p2=0), self._random(SALT_SIZE))
        self._puk.reset()  # a verified PUK opens nothing
        return answer

    def _reset_retry_counter(self, command: CommandAPDU, card: CardServices) -> Response | None:
        if command.p2 == PinReference.GLOBAL_PIN:
            return None
        if command.p1 != 0x00 or command.p2 != PinReference.APPLICATION_PIN:
            return status(StatusWord.INCORRECT_P1_P2)
        puk, new_pin = _pin_field(command.data[:MAX_PIN_LENGTH]), None
        if len(command.data) == 2 * MAX_PIN_LENGTH:
            new_pin = _pin_field(command.data[MAX_PIN_LENGTH:])
        if puk is None or new_pin is None:
            return status(StatusWord.INCORRECT_DATA)
        answer = self._puk.verify(CommandAPDU(0x00, INS_VERIFY, 0x00, 0x00, puk))
        self._puk.reset()
        if answer.sw != StatusWord.SUCCESS:
            return answer
        if self._own_pin is not None:
            self._own_pin = Pin(self._own_pin.state.unblocked(new_pin))
        elif not card.unblock_pin(new_pin):
            return status(StatusWord.MEMORY_FAILURE)
        return status(StatusWord.SUCCESS)

    # -- keys -------------------------------------------------------------------------------

    def _general_authenticate(
        self, p1: int, p2: int, data: bytes, armed: bool, card: CardServices
    ) -> Response:
        if p2 == _CARD_MANAGEMENT:
            answer = self._management.general_authenticate(p1, p2, data)
            return Response(answer.sw, answer.data)
        key = self._keys.get(p2)  # P2 as it is: no enum member built per signature
        if key is None:
            known = p2 in _KEY_REFERENCES
            return status(
                StatusWord.REFERENCED_DATA_NOT_FOUND if known else StatusWord.INCORRECT_P1_P2
            )
        if p1 != key.algorithm_id:
            return status(StatusWord.INCORRECT_P1_P2)
        if not self._may_use(p2, armed, self._pin(card).verified):
            return status(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
        try:
            items = parse_template(data)
        except PIVFormatError:
            return status(StatusWord.INCORRECT_DATA)
        result = None
        if len(items) == 2 and items.get(0x82) == b"":
            block = items.get(0x81)
            if block is not None:
                ec_key = key.ec_key
                if ec_key is not None and len(block) == key.ec_size:
                    # The common case first: a hash of the curve's size, signed as it is.
                    try:
                        result = ec_key.sign_digest(block)
                    except KeyOperationError:
                        result = None
                else:
                    result = self._private_operation(key, block)
            elif p2 in _KEY_ESTABLISHMENT:
                point = items.get(0x85)
                if point is not None:
                    result = self._key_agreement(key, point)
        if result is None:
            return status(StatusWord.INCORRECT_DATA)
        return success(_template(0x82, result))

    @staticmethod
    def _may_use(reference: int, armed: bool, verified: bool) -> bool:
        """Each key's access rule (SP 800-73-4 Part 1 §3.2, Table 4b)."""
        if reference == _CARD_AUTHENTICATION:
            return True
        if reference == _DIGITAL_SIGNATURE:
            return armed and verified
        return verified

    @staticmethod
    def _private_operation(key: _Key, block: bytes) -> bytes | None:
        """RSA: the raw private operation on the padded block; EC: an ECDSA signature (DER)
        of the hash."""
        try:
            if key.ec_key is not None:
                return key.ec_key.sign_digest(_ecdsa_input(key.ec_size, block))
            assert key.rsa_key is not None
            return key.rsa_key.private_operation(block)
        except KeyOperationError:
            return None

    @staticmethod
    def _key_agreement(key: _Key, point: bytes) -> bytes | None:
        """ECDH with the host's uncompressed point: the shared secret's X coordinate."""
        if key.ec_key is None:
            return None
        try:
            return key.ec_key.exchange(point)
        except KeyOperationError:
            return None

    def _generate(self, command: CommandAPDU, data: bytes) -> Response:
        try:
            reference = KeyReference(command.p2)
        except ValueError:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.p1 != 0x00 or reference not in _ASYMMETRIC_KEYS:
            return status(StatusWord.INCORRECT_P1_P2)
        if not self._management.authenticated:
            return status(StatusWord.SECURITY_STATUS_NOT_SATISFIED)
        try:
            fields = decode_fields(decode_one(data, 0xAC), where="control reference template")
            raw = require(fields, 0x80, where="control reference template")
            algorithm = Algorithm(int.from_bytes(raw, "big")) if len(raw) == 1 else None
        except (PIVFormatError, ValueError):
            return status(StatusWord.INCORRECT_DATA)
        private_key: PrivateKey
        if algorithm in _CURVES:
            private_key = ec.generate_private_key(_CURVES[algorithm])
            point = private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            public = encode([(0x86, point)])
        elif algorithm in _RSA_ALGORITHMS.values():
            bits = next(size for size, named in _RSA_ALGORITHMS.items() if named == algorithm)
            private_key = rsa.generate_private_key(65537, bits)
            numbers = private_key.public_key().public_numbers()
            public = encode(
                [
                    (0x81, numbers.n.to_bytes(bits // 8, "big")),
                    (0x82, numbers.e.to_bytes(3, "big")),
                ]
            )
        else:
            return status(StatusWord.INCORRECT_DATA)
        card_key = software_key(private_key)
        if not self._kept(KeyGenerated(reference, private_key)):
            return status(StatusWord.MEMORY_FAILURE)
        self._keys[reference] = _load_key(card_key)
        return success(ber_tlv(0x7F49, public))
