"""The card: ATR, power, logical channels, SELECT by AID, GET RESPONSE chaining and the
ISO/IEC 7816-4 commands that no applet answers (VERIFY, CHANGE REFERENCE DATA, GET CHALLENGE).

:meth:`Card.transmit` is pure: bytes in, bytes out, no I/O, and it never raises. Every input gets
a response ending in a valid status word; a bug answers ``6F00`` and is logged.

Behaviour follows libcacard's card (``card_7816.c``, ``vcard.c``) where a host can tell, with
these deliberate differences:

- Response sizing is libcacard's and T=0's: data longer than Le (no Le counts as 0) is kept for
  GET RESPONSE and announced with ``61xx``; any other command drops it. Once the reader says
  the card runs T=1 (:attr:`Card.protocol`), a command without Le gets its data at once, as a
  T=1 card answers (yubico-piv-tool's SELECT has no Le and wants ``9000``: yubico-piv-tool,
  ``lib/ykpiv.c``, ``_ykpiv_select_application``), up to 256 bytes (65,536 for an extended
  command). Data longer than that, or than a present Le, come as their first Ne bytes with
  ``61xx`` for the rest (response chaining, as PIV cards answer under T=1): OpenSC appends
  what GET RESPONSE brings to what came (``apdu.c``, ``sc_get_response``) and sends none once
  its buffer is full, so its PIV driver's 8-byte length probe of an object is one exchange.
- The data kept for GET RESPONSE belong to the logical channel of the command that produced
  them (a command names its channel in its class byte, GET RESPONSE too), where libcacard
  keeps one buffer for the card: a GET RESPONSE on another channel gets none of them
  (``6A88``, as with nothing pending). Only a GET RESPONSE the card accepts takes them: one it
  refuses (P1-P2 other than ``0000``: ``6A86``; command data: ``6700``; secure messaging,
  chaining or an unknown class, as any command) is another command and drops them, as does one
  on another channel. That is T=0's rule (the card offers the data to the next command only,
  ISO/IEC 7816-3 §12.2) and a Java Card's: its runtime fails a pending outgoing transfer when
  the next command is not the GET RESPONSE it expects (``APDUException.NO_T0_GETRESPONSE``).
  libcacard ignores P1-P2 (``card_7816.c``, ``vcard7816_vm_process_apdu``).
- A SELECT of an AID the card lacks leaves no applet selected, as on libcacard, unless the
  card is built with ``selection_survives_miss`` (a card with PIV): then the selection stays,
  as ISO/IEC 7816-4 has it and as PIV tools expect after probing an AID (yubico-piv-tool probes
  the YubiKey management AID and goes on talking to PIV).
- Logical channels 0-3 are always open, each with its own selected applet (MANAGE CHANNEL is
  refused, as libcacard does), but the channel bits of CLA are not mistaken for secure
  messaging: libcacard answers ``6882`` to ISO commands on channels 2 and 3.
- SELECT with P2=0C returns no FCI (ISO/IEC 7816-4); libcacard returns it anyway.
- The ISO layer answers unknown instructions with ``6D00`` and unsupported classes with
  ``6E00``/``6884``, where libcacard says ``6900`` to all three.
- GET CHALLENGE returns random bytes; libcacard does not support it, so OpenSC's RNG failed.
- VERIFY keeps a retry counter (:mod:`cacard.pin`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from logging import DEBUG
from typing import Final

from cardfloor.iso7816.apdu import (
    EXTENDED_MAX,
    SHORT_MAX,
    APDUFormatError,
    CommandAPDU,
    Response,
    StatusWord,
    bytes_remaining,
    status,
    success,
)
from cardfloor.iso7816.instructions import (
    INS_CHANGE_REFERENCE_DATA,
    INS_GENERAL_AUTHENTICATE,
    INS_GENERATE_ASYMMETRIC_KEY_PAIR,
    INS_GET_CHALLENGE,
    INS_GET_RESPONSE,
    INS_MANAGE_CHANNEL,
    INS_RESET_RETRY_COUNTER,
    INS_SELECT,
    INS_VERIFY,
)
from cardfloor.iso7816.trace import apdu_trace
from cardfloor.log import get_logger

from .applets.applet import Applet, Selection
from .applets.pki import INS_PRIVATE_KEY_OPERATION
from .atr import CAC_ATR as CAC_ATR
from .pin import SALT_SIZE, Pin, PinState
from .select_commands import SelectForm

log = get_logger(__name__)

CHANNELS: Final = 4
_SLOW_INSTRUCTIONS: Final = frozenset(
    (
        INS_PRIVATE_KEY_OPERATION,
        INS_GENERAL_AUTHENTICATE,
        INS_GENERATE_ASYMMETRIC_KEY_PAIR,
        INS_VERIFY,
        INS_CHANGE_REFERENCE_DATA,
        INS_RESET_RETRY_COUNTER,
    )
)
#: SELECT P2 bits b4-b3 set: no response data wanted.
P2_NO_RESPONSE_DATA: Final = 0x0C
#: CLA bits of secure messaging in the first interindustry class.
CLA_SECURE_MESSAGING: Final = 0x0C
CLA_CHANNEL: Final = 0x03
# High nibbles of CLA: first interindustry (0), proprietary with the same coding (8-A), and the
# proprietary B and C, which carry no channel.
_CHANNEL_CLASSES: Final = frozenset({0x0, 0x8, 0x9, 0xA})
_PLAIN_CLASSES: Final = frozenset({0xB, 0xC})
_CHAINING_CLASS: Final = 0x1


@dataclass(frozen=True, slots=True)
class CardState:
    """What a card must keep across restarts (today: its PIN and retry counter)."""

    pin: PinState


#: Called with every new :class:`CardState` before the card answers the command that changed
#: it. If it raises, the card answers ``6581`` (memory failure).
StateSink = Callable[[CardState], None]


def _channel(cla: int) -> int:
    return cla & CLA_CHANNEL if cla >> 4 in _CHANNEL_CLASSES else 0


class Card:
    """A smart card made of ``applets``, with one PIN.

    ``on_state_change`` receives the new :class:`CardState` whenever the PIN or its counter
    changes, before the response leaves the card: persist it there. ``random`` supplies
    GET CHALLENGE bytes and PIN salts.
    """

    def __init__(
        self,
        applets: Sequence[Applet],
        pin: PinState,
        *,
        atr: bytes = CAC_ATR,
        on_state_change: StateSink | None = None,
        random: Callable[[int], bytes] = os.urandom,
        selection_survives_miss: bool = False,
    ) -> None:
        # Bound once: with debug off each call is then a no-op method, where the module's
        # lazy proxy would build a logger per call (measurable on the per-APDU path).
        self._log = log.bind()
        self.atr = atr
        self.applets = {applet.aid: applet for applet in applets}
        if len(self.applets) != len(applets):
            raise ValueError("applet AIDs must be unique")
        self._on_state_change = on_state_change
        self._random = random
        self._pin = Pin(pin, self._pin_changed)
        self._channels: list[Selection | None] = [None] * CHANNELS
        self._pending = b""
        #: The channel whose command left ``_pending``.
        self._pending_channel = 0
        self._selection_survives_miss = selection_survives_miss
        self.powered = True
        #: The transmission protocol the reader runs with the card: 0 (T=0) until a transport
        #: that knows better (a PPS, CCID SetParameters, vpcd with a T=1 ATR) sets 1.
        self.protocol = 0

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> CardState:
        return CardState(self._pin.state)

    @property
    def pin_verified(self) -> bool:
        return self._pin.verified

    @property
    def pin(self) -> Pin:
        return self._pin

    def unblock_pin(self, new_pin: bytes) -> bool:
        unblocked = self._pin.state.unblocked(new_pin)
        try:
            self._pin_changed(unblocked)
        except Exception as error:
            log.error("cacard.pin_persist_failed", error=repr(error))
            return False
        # A new Pin: the unblocked PIN starts unverified.
        self._pin = Pin(unblocked, self._pin_changed)
        return True

    def selected(self, channel: int = 0) -> Applet | None:
        """The applet selected on ``channel``, if any."""
        selection = self._channels[channel]
        return None if selection is None else selection.applet

    def _pin_changed(self, pin: PinState) -> None:
        if self._on_state_change is not None:
            self._on_state_change(CardState(pin))

    # -- power ------------------------------------------------------------------------------

    def power_on(self) -> bytes:
        """Cold reset: no applet selected, nothing pending, PIN not verified. Returns the ATR."""
        self._clear_volatile()
        self.powered = True
        return self.atr

    def reset(self) -> bytes:
        """Warm reset: the same as :meth:`power_on` for this card."""
        return self.power_on()

    def power_off(self) -> None:
        self._clear_volatile()
        self.powered = False

    def _clear_volatile(self) -> None:
        self._channels = [None] * CHANNELS
        self._pending = b""
        self._pin.reset()
        for applet in self.applets.values():
            applet.reset()

    # -- APDUs ------------------------------------------------------------------------------

    @staticmethod
    def may_block(apdu: bytes) -> bool:
        """True when :meth:`transmit` of ``apdu`` may take long: a private-key operation (a
        PKCS#11 token may take seconds) or a PIN command (the retry counter is stored before
        the comparison). Every other command is answered from memory in microseconds, so a
        caller on an event loop runs those inline and only these in a worker thread.
        """
        return len(apdu) >= 2 and apdu[1] in _SLOW_INSTRUCTIONS

    def transmit(self, apdu: bytes) -> bytes:
        """Process one command APDU and return the response APDU. Never raises."""
        try:
            if not self.powered:
                # A reader that sends an APDU has powered the card, whether it said so or not.
                self._log.debug("cacard.implicit_power_on")
                self.power_on()
            response = self._process(bytes(apdu))
        except Exception:
            self._log.exception("cacard.internal_error", command=apdu_trace(bytes(apdu)))
            self._pending = b""
            response = status(StatusWord.NO_PRECISE_DIAGNOSIS)
        raw = response.to_bytes()
        if self._log.is_enabled_for(DEBUG):  # the trace costs more than most commands
            self._log.debug("cacard.apdu", command=apdu_trace(bytes(apdu)), response=raw.hex())
        return raw

    def _process(self, raw: bytes) -> Response:
        try:
            command = CommandAPDU.from_bytes(raw)
        except APDUFormatError as error:
            self._log.debug("cacard.bad_apdu", field=error.field, value=error.value)
            self._pending = b""
            return status(StatusWord.WRONG_LENGTH)
        if command.ins == INS_GET_RESPONSE:
            return self._get_response(command)
        self._pending = b""
        channel = _channel(command.cla)
        if command.ins == INS_SELECT and command.p1 == SelectForm.DF_NAME:
            answer = self._check_class(command.cla) or self._select(command, channel)
            return self._sized(command, answer)
        selection = self._channels[channel]
        if selection is not None:
            handled = selection.applet.process(command, selection, self)
            if handled is not None:
                return self._sized(command, handled)
        answer = self._check_class(command.cla) or self._iso(command)
        return self._sized(command, answer)

    def _sized(self, command: CommandAPDU, answer: Response) -> Response:
        """Keep data that exceed Le for GET RESPONSE, announcing it with ``61xx``."""
        # Under T=1 a command without Le takes what one response of its kind carries (hosts
        # receive into a buffer of that size: yubico-piv-tool, lib/ykpiv.c,
        # _ykpiv_transfer_data); more still goes through 61xx.
        limit = command.ne
        if command.le is None and self.protocol == 1:
            limit = EXTENDED_MAX if command.extended else SHORT_MAX
        if answer.sw == StatusWord.SUCCESS and len(answer.data) > limit:
            self._pending_channel = _channel(command.cla)
            if self.protocol == 1:
                # T=1 carries data and 61xx together (T=0's 61xx comes alone).
                head, self._pending = answer.data[:limit], answer.data[limit:]
                return Response(bytes_remaining(len(self._pending)), head)
            self._pending = answer.data
            return status(bytes_remaining(len(answer.data)))
        return answer

    def _get_response(self, command: CommandAPDU) -> Response:
        """The next part of the data kept for this channel; any GET RESPONSE that does not take
        them drops them (module docstring)."""
        pending, self._pending = self._pending, b""
        refused = self._check_class(command.cla)
        if refused is not None:
            return refused
        if command.p1 or command.p2:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.data:
            return status(StatusWord.WRONG_LENGTH)  # GET RESPONSE carries no command data
        if not pending or _channel(command.cla) != self._pending_channel:
            return status(StatusWord.REFERENCED_DATA_NOT_FOUND)
        count = SHORT_MAX if command.le is None else command.le
        chunk, self._pending = pending[:count], pending[count:]
        if self._pending:
            return Response(bytes_remaining(len(self._pending)), chunk)
        return success(chunk)

    @staticmethod
    def _check_class(cla: int) -> Response | None:
        """Why the ISO layer refuses ``cla``, or None if it accepts it."""
        nibble = cla >> 4
        if nibble in _CHANNEL_CLASSES:
            if cla & CLA_SECURE_MESSAGING:
                return status(StatusWord.SECURE_MESSAGING_NOT_SUPPORTED)
            return None
        if nibble in _PLAIN_CLASSES:
            return None
        if nibble == _CHAINING_CLASS:
            return status(StatusWord.COMMAND_CHAINING_NOT_SUPPORTED)
        return status(StatusWord.CLA_NOT_SUPPORTED)

    def _select(self, command: CommandAPDU, channel: int) -> Response:
        applet = self.applets.get(command.data)
        if applet is None:
            # An exact AID first; then an applet that takes a truncated one (PIV).
            applet = next((a for a in self.applets.values() if a.selected_by(command.data)), None)
        if applet is None:
            if not self._selection_survives_miss:
                self._channels[channel] = None  # libcacard's way
            return status(StatusWord.FILE_NOT_FOUND)
        self._channels[channel] = applet.select()
        self._log.debug("cacard.selected", applet=applet.name, channel=channel)
        if command.p2 & P2_NO_RESPONSE_DATA == P2_NO_RESPONSE_DATA:
            return status(StatusWord.SUCCESS)
        return success(applet.fci())

    def _iso(self, command: CommandAPDU) -> Response:
        ins = command.ins
        if ins == INS_VERIFY:
            return self._pin.verify(command)
        if ins == INS_CHANGE_REFERENCE_DATA:
            return self._pin.change(command, self._random(SALT_SIZE))
        if ins == INS_GET_CHALLENGE:
            return self._get_challenge(command)
        if ins == INS_MANAGE_CHANNEL:
            return status(StatusWord.COMMAND_NOT_ALLOWED)
        if ins == INS_SELECT:
            return status(StatusWord.FUNCTION_NOT_SUPPORTED)
        return status(StatusWord.INS_NOT_SUPPORTED)

    def _get_challenge(self, command: CommandAPDU) -> Response:
        if command.p1 or command.p2:
            return status(StatusWord.INCORRECT_P1_P2)
        if command.le is None or command.data:
            return status(StatusWord.WRONG_LENGTH)
        return success(self._random(command.le))
