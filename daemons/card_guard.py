"""What a host may do to a card: the PIN guard and an optional APDU allow list.

A malicious or broken guest can block a real card by looping wrong PINs or PUKs. Before it
forwards a command that may spend a try (:func:`cacard.pin_commands.pin_attempt`: VERIFY,
CHANGE REFERENCE DATA, RESET RETRY COUNTER in any encoding the card's parser accepts), the guard
asks the card how many tries that counter has left (VERIFY without data, ISO/IEC 7816-4
§11.5.6) and answers ``6983`` (authentication method blocked) itself unless more than ``keep``
are left. The card keeps its last tries for its owner.

The rules for what the card does not say plainly:

- A PIN command the card's parser rejects is answered ``6700`` (wrong length) here: a lenient
  card (vsmartcard's vicc) still takes some of them as a VERIFY.
- ``9000`` to the probe means "already verified", not a count. The guard then uses the count it
  last learned on this card (from a probe or from the ``63Cx`` answer to an attempt), else resets
  the verification (VERIFY P1=FF) and asks again: a host that sends the right PIN is verified
  again, and a wrong one would have cleared the status anyway. It asks again too when it learned
  a lower count for another reference: two references may share one counter and keep a
  verified state each (PIV's global PIN ``00`` and application PIN ``80`` on a card where they
  are one PIN), so wrong tries through one leave the other's learned count too high.
- A counter nothing can ask for (a resetting code, i.e. a PUK; a reference the card answers
  the probe for with another status) and whose count the guard has not learned is unknown, and
  an attempt on an unknown counter is refused: letting the first one through "to learn the
  count" spends the last try of a counter that already sits at ``keep``.
- A probe answered ``63xx`` without a count may itself have spent a try (vicc's ISO card does
  that): that counter is never probed again on that card.
- A chained command (CLA bit ``10``) is judged at its first chunk, since a probe inside a chain
  would break it. Some cards ignore chaining and take each chunk as a whole command, so every
  chunk counts as a try: a chain may have at most (tries left - ``keep``) chunks, and once a
  chunk is refused, the rest of that chain is refused too.

The allow list (``vscclient --allow-ins``, ``--allow-aid``; :class:`ApduPolicy`) answers what it
does not allow before the PIN guard looks:

- An instruction it does not list is answered ``6D00`` (instruction not supported).
- A SELECT by AID (P1=04) is answered ``6A82`` (file not found) unless its AID starts with an
  allowed one and it asks for the first or only occurrence (P2 b2-b1 = 00). For the last, next
  or previous occurrence the card picks among the applets whose AID starts with the given bytes
  in an order only it knows, and cards differ in how they match those bytes (some step to the
  next applet whatever they are): no AID the host gives, not even an allowed one given whole,
  tells which applet that selects. A first-occurrence SELECT of a part of an AID picks an applet
  whose AID starts with that part, so with an allowed one too. Every chunk of a chained SELECT
  must start with an allowed AID, so whatever a card assembles from them does.
- With ``--allow-aid``, every other SELECT is answered ``6A82`` as well, unless it selects an
  EF under the current DF (P1=02, a CAC applet's SELECT OBJECT), which never leaves the applet
  the host selected (:mod:`cacard.select_commands`): by file identifier (P1=00, which may find
  the MF, the parent DF or a sibling DF), a child DF (01), the parent DF (03), a path (08, 09)
  or an RFU P1 may reach another application on a card with a file system, and which one only
  the card knows. ``6A82`` is what a card answers for a file it does not have: the host sees the
  applet as missing, as it does for a refused AID. MANAGE CHANNEL opening a channel (any P1 but
  ``80``) is answered ``6881`` (logical channel not supported): the card would select an
  application of its own choosing on the new channel (the MF, a Java Card's default applet).
  Closing one passes. Inside ENVELOPEs a SELECT or MANAGE CHANNEL is judged as soon as its
  instruction is there, a P1 not yet sent read as ``00`` (a lenient card pads ``00 A4`` so): of
  a split one, only a SELECT of an EF under the current DF whose first part holds its P1 passes.
- ``C3`` (a BER-TLV ENVELOPE, whose data neither policy reads) is answered ``6D00`` by any allow
  list, even one that lists it.

ENVELOPE (``C2``, ISO/IEC 7816-4:2013 §11.7.2) carries a command, or a part of one, in its data,
and a card that supports it executes that command (the T=0 transport of extended lengths,
ISO/IEC 7816-3 §12.2, sends long commands so). The PIN guard and the allow list each judge the
inner command instead, through the same code, each answering with its own status (the PIN guard
``6983``; the allow list ``6D00`` for an instruction it does not list, ``6A82`` for a SELECT,
and for what it cannot judge ``6D00`` with ``--allow-ins``, else ``6A82``):

- It follows what the card may be assembling from ENVELOPE data, assuming that a command starts
  where an ENVELOPE's data starts and that a card either executes the data of each ENVELOPE, or
  the data of consecutive ENVELOPEs once they make a whole command, or at an empty ENVELOPE
  (which ends a sequence). Every command the card may execute that way is judged by the card's
  parser: a whole PIN command exactly as if sent bare (asked about with VERIFY without data, in
  its own class), a whole command by the allow list as if sent bare, an ENVELOPE in it likewise,
  at most :data:`ENVELOPE_DEPTH` deep.
- Only the first bytes of a split command are kept, so a part of a PIN command or of a SELECT by
  AID that is not whole cannot be judged and is refused, as is the rest of that command up to its
  length, an empty ENVELOPE or any other command; so is a part of a command whose instruction the
  allow list does not list. So is a part that could turn a command in progress into one that
  cannot be judged: after ``00 20 00 80`` (a status query) more data would make it a VERIFY, after
  a lone CLA a SELECT by AID. A part carrying other commands, such as a long PUT DATA
  sent over T=0, passes unchanged (a SELECT by AID fits one ENVELOPE).
- An ENVELOPE answered with anything but a bare ``9000`` ended the sequence on the card (it
  executed or rejected what it held). An attempt answered ``9000`` may still be waiting for an
  empty ENVELOPE (or one inside an ENVELOPE): every counter (another class or channel may name
  the same PIN) counts one try less until an ENVELOPE is answered otherwise, and no other attempt
  may go inside an ENVELOPE meanwhile.
- Inside a nested ENVELOPE the guard follows no sequence: a nested part that may still grow into
  a command it must judge whole is refused.
- ENVELOPE ``C3`` wraps its data in BER-TLV objects, which the guard does not read: with the guard
  on it is answered ``6D00`` (instruction not supported), and refused inside an ENVELOPE.

The instruction decides in every class: a lenient card ignores the class byte (a proprietary
``80 C2``, such as a SIM toolkit ENVELOPE, is judged like the interindustry one, ``80 A4`` like a
SELECT).

What the guard learns is kept per card, at most :data:`MEMORY_LIMIT` counters, and forgotten
on SELECT and MANAGE CHANNEL (another application may use the same references), inside an
ENVELOPE too.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import structlog

from cacard.pin_commands import Counter, PinAttempt, pin_attempt
from cacard.select_commands import (
    SelectForm,
    opens_channel,
    stays_in_current_application,
)
from cardfloor.iso7816.apdu import APDUFormatError, CommandAPDU, StatusWord, instruction
from cardfloor.iso7816.instructions import (
    INS_ENVELOPE,
    INS_ENVELOPE_ODD,
    INS_MANAGE_CHANNEL,
    INS_SELECT,
    PIN_INSTRUCTIONS,
)

from .local_card import LocalCard

log = structlog.get_logger("daemons.vscclient")

#: Authentication method blocked: what the host sees instead of a command that was not sent.
SW_BLOCKED: Final = StatusWord.AUTHENTICATION_METHOD_BLOCKED.to_bytes(2, "big")
SW_WRONG_LENGTH: Final = StatusWord.WRONG_LENGTH.to_bytes(2, "big")
SW_INS_NOT_SUPPORTED: Final = StatusWord.INS_NOT_SUPPORTED.to_bytes(2, "big")
SW_FILE_NOT_FOUND: Final = StatusWord.FILE_NOT_FOUND.to_bytes(2, "big")
SW_LOGICAL_CHANNEL_NOT_SUPPORTED: Final = StatusWord.LOGICAL_CHANNEL_NOT_SUPPORTED.to_bytes(
    2, "big"
)
SW_SUCCESS: Final = StatusWord.SUCCESS.to_bytes(2, "big")
#: Counters the guard remembers per card; the oldest is forgotten first (forgetting only makes
#: the guard ask again, or refuse).
MEMORY_LIMIT: Final = 32
#: ENVELOPEs nested in one another that the guard unwraps; a deeper one is refused.
ENVELOPE_DEPTH: Final = 3
#: Commands in progress inside ENVELOPEs that the guard follows per card and policy; a part that
#: would make more is refused.
ENVELOPE_STARTS: Final = 4
_SW1_WARNING_NVM_CHANGED: Final = 0x63
#: The most tries ``63Cx`` can report.
MAX_TRIES_NIBBLE: Final = 0x0F
#: The instructions that may select an applet: an AID allow list judges them, and the guard
#: forgets the counters it learned after them.
_SELECTING_INSTRUCTIONS: Final = frozenset({INS_SELECT, INS_MANAGE_CHANNEL})
#: What the card's parser reads of a command besides its length: CLA INS P1 P2 and an extended Lc.
_HEAD: Final = 7
#: CLA INS P1 P2.
_HEADER: Final = 4
#: The longest command APDU: extended case 4, plus one byte for vicc's 3-byte Le.
_LONGEST: Final = 4 + 3 + 65535 + 3
#: SELECT P2 b2-b1: which applet among those whose AID starts with the data (00: the first).
_P2_OCCURRENCE: Final = 0x03
_P2_FIRST_OCCURRENCE: Final = 0x00


def tries_left(status: bytes) -> int | None:
    """Tries left per a status answer: ``63Cx`` gives x, ``6983`` 0, else unknown."""
    if len(status) != 2:
        return None
    if status[0] == 0x63 and status[1] & 0xF0 == 0xC0:
        return status[1] & 0x0F
    if status == SW_BLOCKED:
        return 0
    return None


@dataclass(frozen=True)
class ApduPolicy:
    """Which commands may reach the card: all when a set is empty (module docstring)."""

    instructions: frozenset[int] = frozenset()
    aids: frozenset[bytes] = frozenset()
    restricts: bool = field(init=False, repr=False, compare=False)
    """Whether the policy refuses anything: only then does the guard follow ENVELOPEs for it.
    (An attribute, not a property: the guard reads it on every APDU.)"""

    def __post_init__(self) -> None:
        object.__setattr__(self, "restricts", bool(self.instructions or self.aids))

    def refusal(self, apdu: bytes) -> bytes | None:
        """The status word to answer instead of forwarding ``apdu``, or None to forward it.

        ``apdu`` is judged as one command; what an ENVELOPE carries, :class:`CardGuard` judges
        through the same rules, following what the card may assemble."""
        ins = instruction(apdu)
        if ins is None:
            return None  # the card itself answers malformed APDUs
        if self.instructions and ins not in self.instructions:
            return SW_INS_NOT_SUPPORTED
        if ins == INS_ENVELOPE_ODD and self.restricts:
            return SW_INS_NOT_SUPPORTED  # its BER-TLV data is not read
        if self.aids and ins in _SELECTING_INSTRUCTIONS:
            try:
                command = CommandAPDU.from_bytes(apdu)
            except APDUFormatError:
                # A lenient card may still select something with it.
                return SW_WRONG_LENGTH
            return self._selection_refusal(command)
        return None

    def _selection_refusal(self, command: CommandAPDU) -> bytes | None:
        """What refuses a SELECT or MANAGE CHANNEL ``command`` that may leave the applets the
        list allows (module docstring); a SELECT by AID is judged by its data."""
        if command.ins == INS_MANAGE_CHANNEL:
            return SW_LOGICAL_CHANNEL_NOT_SUPPORTED if opens_channel(command) else None
        if command.p1 == SelectForm.DF_NAME:
            return None if self._selects_allowed(command) else SW_FILE_NOT_FOUND
        return None if stays_in_current_application(command) else SW_FILE_NOT_FOUND

    def _selects_allowed(self, select: CommandAPDU) -> bool:
        """Whether a SELECT by AID can only pick an applet whose AID starts with an allowed one."""
        if select.p2 & _P2_OCCURRENCE != _P2_FIRST_OCCURRENCE:
            return False  # the card's order decides (module docstring)
        return any(select.data.startswith(allowed) for allowed in self.aids)

    @property
    def _rules(self) -> _Rules:
        unjudged = SW_INS_NOT_SUPPORTED if self.instructions else SW_FILE_NOT_FOUND
        return _Rules("vscclient.apdu_refused", unjudged, self._judge_inner)

    def _judge_inner(self, inner: _Inner, data: bytes | None) -> _Verdict:
        """The allow list's verdict on ``inner``, a command inside ENVELOPEs but none itself."""
        ins = instruction(inner.head)
        if self.instructions and ins not in self.instructions:
            return _refused("instruction not allowed", SW_INS_NOT_SUPPORTED)
        if self.aids and ins in _SELECTING_INSTRUCTIONS:
            header = _header(inner.head)
            if ins == INS_SELECT and header.p1 == SelectForm.DF_NAME:
                if data is None or not inner.whole:
                    # Only the first bytes of a split command are kept: its AID is not.
                    return _refused("SELECT by AID split across ENVELOPEs", SW_FILE_NOT_FOUND)
                refusal = self.refusal(data)
            else:
                refusal = self._selection_refusal(header)  # P1 decides
            if refusal is not None:
                return _refused("selection of an applet not allowed", refusal)
        return _Verdict(_Kind.HARMLESS if inner.whole else _Kind.UNFINISHED)


def _header(head: bytes) -> CommandAPDU:
    """The header (CLA INS P1 P2) of a command whose first bytes are ``head``, read by the card's
    parser as a command of that header alone. What is not sent yet reads 00, as a lenient card
    that pads a short command reads it (an empty ENVELOPE may make it execute ``00 A4`` as a
    SELECT of the MF). Of what the allow list judges, only the occurrence of a SELECT by AID
    depends on P2, and a split one is refused whatever it is."""
    return CommandAPDU.from_bytes(head[:_HEADER].ljust(_HEADER, b"\x00"))


@dataclass(frozen=True, slots=True)
class _Inner:
    """A command the card may be assembling from ENVELOPE data: its first bytes and length."""

    head: bytes
    size: int

    @classmethod
    def of(cls, data: bytes) -> _Inner:
        return cls(data[:_HEAD], len(data))

    def then(self, data: bytes) -> _Inner:
        """The same command with ``data`` appended."""
        return _Inner((self.head + data[:_HEAD])[:_HEAD], self.size + len(data))

    @property
    def stand_in(self) -> bytes:
        """Bytes the card's parser and :func:`pin_attempt` judge as they would the command: they
        read its first seven bytes and length, and beyond those only the Le value, which decides
        nothing here, and whether there is data."""
        return self.head + bytes(self.size - len(self.head))

    @property
    def whole(self) -> bool:
        try:
            CommandAPDU.from_bytes(self.stand_in)
        except APDUFormatError:
            return False
        return True


class _Kind(enum.Enum):
    """What an inner command may do, as far as its bytes so far tell."""

    #: Whole, and the policy lets it through however it goes on.
    HARMLESS = "harmless"
    #: Not whole yet; what follows cannot change the policy's verdict.
    UNFINISHED = "unfinished"
    #: What follows may make it a command the policy refuses or must judge whole (no instruction
    #: yet; VERIFY without data; SELECT without P1).
    OPEN = "open"
    #: A whole command that may spend a PIN try.
    ATTEMPT = "attempt"
    #: Refused, with ``status``.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class _Verdict:
    kind: _Kind
    attempt: PinAttempt | None = None
    reason: str = ""
    status: bytes = b""


def _refused(reason: str, status: bytes) -> _Verdict:
    return _Verdict(_Kind.REFUSED, reason=reason, status=status)


@dataclass(frozen=True, slots=True)
class _Rules:
    """How one policy judges commands inside ENVELOPEs; :func:`_judge` unwraps ENVELOPEs."""

    #: The log event of its refusals.
    event: str
    #: Its answer to what it cannot judge (an ENVELOPE nested too deep, say).
    unjudged: bytes
    #: Its verdict on a command that is no ENVELOPE: its bytes so far, and all of them when they
    #: are the data of one ENVELOPE.
    judge: Callable[[_Inner, bytes | None], _Verdict]


def _judge(rules: _Rules, inner: _Inner, data: bytes | None, depth: int) -> _Verdict:
    """What the card may do with ``inner``, a command inside ``depth`` ENVELOPEs, per ``rules``;
    ``data`` is its bytes when the guard has them (the data of one ENVELOPE)."""
    ins = instruction(inner.head)
    if ins is None:
        return _Verdict(_Kind.OPEN)
    if ins == INS_ENVELOPE_ODD:
        return _refused("odd ENVELOPE inside an ENVELOPE", rules.unjudged)
    if ins == INS_ENVELOPE:
        # No allow list refuses C2 here: the outer ENVELOPE had the same instruction.
        return _judge_nested(rules, inner, data, depth)
    return rules.judge(inner, data)


def _judge_nested(rules: _Rules, inner: _Inner, data: bytes | None, depth: int) -> _Verdict:
    try:
        envelope = CommandAPDU.from_bytes(inner.stand_in if data is None else data)
    except APDUFormatError:
        return _refused("part of a split ENVELOPE", rules.unjudged)
    if not envelope.data:
        return _Verdict(_Kind.OPEN)  # ends a nested sequence; data may still follow
    if data is None:
        return _refused("ENVELOPE assembled from ENVELOPEs", rules.unjudged)  # data not kept
    if depth >= ENVELOPE_DEPTH:
        return _refused("ENVELOPEs nested too deep", rules.unjudged)
    nested = _judge(rules, _Inner.of(envelope.data), envelope.data, depth + 1)
    if nested.kind is _Kind.OPEN:
        # No sequence is followed inside a nested ENVELOPE: what the next part could make of it
        # is unknown.
        return _refused("start of a command inside a nested ENVELOPE", rules.unjudged)
    if nested.kind is _Kind.UNFINISHED:
        return _Verdict(_Kind.HARMLESS)
    return nested


def _judge_pin_command(inner: _Inner, data: bytes | None) -> _Verdict:
    """The PIN guard's verdict on ``inner``, a command inside ENVELOPEs but none itself."""
    if instruction(inner.head) not in PIN_INSTRUCTIONS:
        return _Verdict(_Kind.HARMLESS if inner.whole else _Kind.UNFINISHED)
    try:
        attempt = pin_attempt(inner.stand_in)
    except APDUFormatError:
        return _refused("part of a split PIN command", SW_BLOCKED)
    if attempt is None:
        # VERIFY without data asks for the counter; with data following, it would compare.
        return _Verdict(_Kind.OPEN if inner.size <= _HEAD else _Kind.HARMLESS)
    if attempt.chained:
        return _refused("chained PIN command inside an ENVELOPE", SW_BLOCKED)
    return _Verdict(_Kind.ATTEMPT, attempt)


_PIN_RULES: Final = _Rules("vscclient.pin_guard", SW_BLOCKED, _judge_pin_command)


@dataclass
class _Envelopes:
    """What the card may be assembling from ENVELOPE data, as one policy follows it."""

    #: Commands in progress that the policy may still have to refuse, or whose end decides
    #: where the next command starts.
    starts: list[_Inner] = field(default_factory=list)
    #: The next ENVELOPE's data may start a command (nothing in progress, or it may be whole).
    fresh: bool = True
    #: The rest of a split command that was refused, and the status it was refused with.
    refusing: _Inner | None = None
    refused_with: bytes = SW_BLOCKED

    def candidates(self, data: bytes) -> list[tuple[_Inner, bytes | None]]:
        """The commands an ENVELOPE with ``data`` may make on the card."""
        found: list[tuple[_Inner, bytes | None]] = [
            (start.then(data), None) for start in self.starts
        ]
        if self.fresh:
            found.append((_Inner.of(data), data))
        return found

    def judge(self, rules: _Rules, data: bytes) -> list[tuple[_Inner, _Verdict]]:
        """Every command an ENVELOPE with ``data`` may make on the card, judged per ``rules``."""
        return [(inner, _judge(rules, inner, whole, 1)) for inner, whole in self.candidates(data)]

    def refuse(self, inner: _Inner, status: bytes) -> None:
        """``inner`` was refused with ``status``: so is its rest, if it is not whole."""
        self.refusing = None if inner.whole else inner
        self.refused_with = status

    def refuse_rest(self, data: bytes) -> bytes | None:
        """While a refused command is in progress: count ``data`` to its rest and return the
        status that refuses this ENVELOPE too. Else None."""
        if self.refusing is None:
            return None
        rest = self.refusing.then(data)
        ended = not data or rest.whole or rest.size > _LONGEST
        self.refusing = None if ended else rest
        return self.refused_with

    def answered(self, verdicts: list[tuple[_Inner, _Verdict]], answer: bytes) -> None:
        """The card answered a part that made these commands."""
        if answer == SW_SUCCESS:
            self.advance(verdicts)
        else:
            self.starts, self.fresh = [], True

    def advance(self, verdicts: list[tuple[_Inner, _Verdict]]) -> None:
        """The card acknowledged a part (9000) that made these commands."""
        kept = self.following(verdicts)
        self.starts = kept
        # A legitimate first part holds at least a header and an extended Lc: a shorter start
        # may as well be garbage the card dropped.
        self.fresh = (
            not kept
            or any(inner.whole for inner, _ in verdicts)
            or any(inner.size < _HEAD for inner in kept)
        )

    @staticmethod
    def following(verdicts: list[tuple[_Inner, _Verdict]]) -> list[_Inner]:
        follow = (_Kind.OPEN, _Kind.UNFINISHED)
        kept = [inner for inner, verdict in verdicts if verdict.kind in follow]
        return [inner for inner in dict.fromkeys(kept) if inner.size <= _LONGEST]

    def end(self) -> None:
        """The card executed or rejected what it held; a command not yet whole may be kept by a
        card that ignores an empty ENVELOPE."""
        self.starts = [start for start in self.starts if not start.whole]
        self.fresh = True


@dataclass
class _Chain:
    """A chained PIN command in progress: ``budget`` chunks may still be forwarded."""

    counter: Counter
    ins: int
    budget: int


@dataclass
class _CardMemory:
    """What the guard has learned about one card."""

    counts: dict[Counter, int] = field(default_factory=dict)
    unprobed: set[Counter] = field(default_factory=set)
    #: More than MEMORY_LIMIT counters answered the probe with 63xx: probe none of them.
    probes_spend: bool = False
    chain: _Chain | None = None
    #: ENVELOPE sequences as the PIN guard and the allow list follow them.
    pin_envelopes: _Envelopes = field(default_factory=_Envelopes)
    policy_envelopes: _Envelopes = field(default_factory=_Envelopes)
    #: An attempt forwarded in an ENVELOPE and answered 9000: the card may still hold it.
    pending: Counter | None = None

    def may_probe(self, counter: Counter) -> bool:
        return not self.probes_spend and counter not in self.unprobed

    def refuse_probes(self, counter: Counter) -> None:
        self.unprobed.add(counter)
        if len(self.unprobed) > MEMORY_LIMIT:
            self.unprobed.clear()
            self.probes_spend = True

    def learn(self, counter: Counter, left: int) -> None:
        self.counts.pop(counter, None)
        self.counts[counter] = left
        while len(self.counts) > MEMORY_LIMIT:
            del self.counts[next(iter(self.counts))]

    def lowest_count(self) -> int:
        """The lowest count learned for any reference (one may share another's counter)."""
        return min(
            (left for known, left in self.counts.items() if known.probe is not None),
            default=MAX_TRIES_NIBBLE,
        )

    def learn_from_answer(self, counter: Counter, answer: bytes) -> None:
        """After a forwarded attempt: ``63Cx``/``6983`` is the count; ``9000`` refilled it (the
        last count is still a lower bound); anything else may have spent a try."""
        left = tries_left(answer[-2:])
        if left is not None:
            self.learn(counter, left)
        elif answer[-2:] != SW_SUCCESS and counter in self.counts:
            self.learn(counter, max(self.counts[counter] - 1, 0))

    def settle(self, answer: bytes) -> None:
        """An ENVELOPE sequence ended with ``answer``: the attempt it may have held is done."""
        if self.pending is not None:
            self.learn_from_answer(self.pending, answer)
            self.pending = None


class _Recent:
    """The card a guard last served and its memory: a guard serves one card APDU after APDU,
    and finding it in the weak dictionary costs more than the rest of a plain command's check."""

    __slots__ = ("card", "memory")

    def __init__(self) -> None:
        self.card: weakref.ref[LocalCard] | None = None
        self.memory = _CardMemory()


@dataclass(frozen=True)
class CardGuard:
    """Stands between the host and a card: the PIN guard (``keep`` tries; 0 disables it) and
    ``policy``. One guard may serve many cards; it keeps what it learns per card object."""

    keep: int = 1
    policy: ApduPolicy = field(default_factory=ApduPolicy)
    _memory: weakref.WeakKeyDictionary[LocalCard, _CardMemory] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False
    )
    _recent: _Recent = field(
        default_factory=lambda: _Recent(), init=False, repr=False, compare=False
    )

    def forget(self, card: LocalCard) -> None:
        """``card`` was reset: a chain, an ENVELOPE sequence or an attempt in flight ended on it,
        and another application may be selected now, so what the guard learned of its counters
        may not apply any more. It starts over and asks the card again, as after a SELECT."""
        self._memory.pop(card, None)
        self._recent.card = None

    def _memory_of(self, card: LocalCard) -> _CardMemory:
        """What the guard learned of ``card`` (new memory for a card it does not know)."""
        recent = self._recent
        if recent.card is not None and recent.card() is card:
            return recent.memory
        memory = self._memory.get(card)
        if memory is None:
            memory = self._memory[card] = _CardMemory()
        recent.card, recent.memory = weakref.ref(card), memory
        return memory

    def transmit(self, card: LocalCard, apdu: bytes) -> Coroutine[Any, Any, bytes]:
        """Forward ``apdu`` to ``card``, unless the policy or the PIN guard answers it.

        It is on every APDU's path, so it judges at the call and returns the card's own
        ``transmit`` for a command it lets through as it is: no coroutine of the guard's, and
        each check at most once, around the card's work.
        """
        policy = self.policy
        if policy.restricts:
            refusal = policy.refusal(apdu)
            if refusal is not None:
                log.warning("vscclient.apdu_refused", ins=_hex(instruction(apdu)), sw=refusal.hex())
                return _answer(refusal)
        elif not self.keep:
            return card.transmit(apdu)
        ins = instruction(apdu)
        if self.keep and ins == INS_ENVELOPE_ODD:
            log.warning(
                "vscclient.pin_guard",
                ins="c3",
                action="BER-TLV ENVELOPE answered 6d00: the guard does not read its data",
            )
            return _answer(SW_INS_NOT_SUPPORTED)
        memory = self._memory_of(card)
        if ins == INS_ENVELOPE:
            memory.chain = None  # another command: it ends a chain on the card
            return self._envelope(card, memory, apdu)
        # Another command ends the host's ENVELOPE sequence.
        memory.pin_envelopes.refusing = memory.policy_envelopes.refusing = None
        if not self.keep:
            return card.transmit(apdu)
        attempt = None
        if ins in PIN_INSTRUCTIONS:  # pin_attempt's own first test: no call for other commands
            try:
                attempt = pin_attempt(apdu)
            except APDUFormatError as error:
                log.warning(
                    "vscclient.pin_guard",
                    ins=_hex(ins),
                    field=error.field,
                    value=error.value,
                    action="malformed PIN command answered 6700 without reaching the card",
                )
                return _answer(SW_WRONG_LENGTH)
        if attempt is None:
            memory.chain = None  # any other command ends a chain on the card
            if ins in _SELECTING_INSTRUCTIONS:
                memory.counts.clear()
            return card.transmit(apdu)
        return self._attempt(card, memory, apdu, attempt)

    async def _attempt(
        self, card: LocalCard, memory: _CardMemory, apdu: bytes, attempt: PinAttempt
    ) -> bytes:
        counter = attempt.counter
        chain = memory.chain
        if chain is not None and (chain.counter, chain.ins) == (counter, attempt.command.ins):
            # A later chunk: never probed (that would break the chain on the card).
            if not attempt.chained:
                memory.chain = None
            if chain.budget <= 0:
                return self._refuse(attempt, None, "chunk of a refused chain")
            chain.budget -= 1
            answer = await card.transmit(apdu)
            memory.learn_from_answer(counter, answer)
            left = tries_left(answer[-2:])
            if left is not None:
                chain.budget = left - self.keep
            return answer
        memory.chain = None
        left = await self._tries_left(card, memory, counter)
        if left is None or left <= self.keep:
            if attempt.chained:
                memory.chain = _Chain(counter, attempt.command.ins, 0)
            return self._refuse(attempt, left, "answered 6983 without reaching the card")
        if attempt.chained:
            memory.chain = _Chain(counter, attempt.command.ins, left - self.keep - 1)
        answer = await card.transmit(apdu)
        memory.learn_from_answer(counter, answer)
        if memory.chain is not None:
            after = tries_left(answer[-2:])
            if after is not None:
                memory.chain.budget = after - self.keep
        return answer

    def _followers(self, memory: _CardMemory) -> list[tuple[_Rules, _Envelopes]]:
        """The policies that judge ENVELOPEs on this card, the allow list first (as for bare
        commands), each with what it follows."""
        followers: list[tuple[_Rules, _Envelopes]] = []
        if self.policy.restricts:
            followers.append((self.policy._rules, memory.policy_envelopes))
        if self.keep:
            followers.append((_PIN_RULES, memory.pin_envelopes))
        return followers

    async def _envelope(self, card: LocalCard, memory: _CardMemory, apdu: bytes) -> bytes:
        """Judge an ENVELOPE by every command it may make on the card (module docstring)."""
        followers = self._followers(memory)
        try:
            data = CommandAPDU.from_bytes(apdu).data
        except APDUFormatError as error:
            log.warning(
                followers[0][0].event,
                ins="c2",
                field=error.field,
                value=error.value,
                action="malformed ENVELOPE answered 6700 without reaching the card",
            )
            return SW_WRONG_LENGTH
        # Each policy refusing a command counts this part to its own rest.
        rests = [(rules, follow.refuse_rest(data)) for rules, follow in followers]
        refused = [(rules, status) for rules, status in rests if status is not None]
        if refused:
            rules, status = refused[0]
            return self._refuse_envelope(rules, None, "rest of a refused command", status)
        if not data:
            answer = await card.transmit(apdu)
            for _, follow in followers:
                follow.end()
            if answer != SW_SUCCESS:  # 9000 may be a nested ENVELOPE still holding the attempt
                memory.settle(answer)
            return answer
        judged = [(rules, follow, follow.judge(rules, data)) for rules, follow in followers]
        attempt = None
        for rules, follow, verdicts in judged:
            for inner, verdict in verdicts:
                if verdict.kind is _Kind.REFUSED:
                    follow.refuse(inner, verdict.status)
                    return self._refuse_envelope(rules, inner, verdict.reason, verdict.status)
                if verdict.kind is _Kind.ATTEMPT:
                    if attempt is not None:
                        return self._refuse_envelope(
                            rules, inner, "two PIN commands in one ENVELOPE", rules.unjudged
                        )
                    attempt = verdict.attempt
            if len(follow.following(verdicts)) > ENVELOPE_STARTS:
                return self._refuse_envelope(
                    rules, None, "too many commands in progress", rules.unjudged
                )
        if attempt is not None:
            if memory.pending is not None:
                return self._refuse(attempt, None, "another attempt may wait in an ENVELOPE")
            left = await self._tries_left(card, memory, attempt.counter)
            if left is None or left <= self.keep:
                return self._refuse(attempt, left, "ENVELOPE answered 6983 here")
        answer = await card.transmit(apdu)
        for _, follow, verdicts in judged:
            follow.answered(verdicts, answer)
            if any(instruction(inner.head) in _SELECTING_INSTRUCTIONS for inner, _ in verdicts):
                memory.counts.clear()
        if answer != SW_SUCCESS:
            memory.settle(answer)
            if attempt is not None:
                memory.learn_from_answer(attempt.counter, answer)
        elif attempt is not None:
            memory.pending = attempt.counter
        return answer

    @staticmethod
    def _refuse_envelope(rules: _Rules, inner: _Inner | None, reason: str, status: bytes) -> bytes:
        log.warning(
            rules.event,
            ins="c2",
            inner_ins=None if inner is None else _hex(instruction(inner.head)),
            sw=status.hex(),
            action=f"{reason}: ENVELOPE answered {status.hex()} without reaching the card",
        )
        return status

    async def _tries_left(
        self, card: LocalCard, memory: _CardMemory, counter: Counter
    ) -> int | None:
        """The tries ``counter`` has left, less one an ENVELOPE sequence may still spend: on any
        counter, since another class or channel may name the same PIN."""
        left = await self._tries_left_on_card(card, memory, counter)
        if left is not None and memory.pending is not None:
            return max(left - 1, 0)
        return left

    async def _tries_left_on_card(
        self, card: LocalCard, memory: _CardMemory, counter: Counter
    ) -> int | None:
        """The tries ``counter`` has left per the card, else per what the guard learned."""
        probe, logout = counter.probe, counter.logout
        if probe is None or logout is None or not memory.may_probe(counter):
            return memory.counts.get(counter)
        answer = await card.transmit(probe)
        if answer == SW_SUCCESS:
            known = memory.counts.get(counter)
            if known is not None and known <= memory.lowest_count():
                return known
            await card.transmit(logout)
            answer = await card.transmit(probe)
        left = tries_left(answer)
        if left is not None:
            memory.learn(counter, left)
            return left
        if len(answer) == 2 and answer[0] == _SW1_WARNING_NVM_CHANGED:
            memory.refuse_probes(counter)
        return memory.counts.get(counter)

    def _refuse(self, attempt: PinAttempt, left: int | None, action: str) -> bytes:
        log.warning(
            "vscclient.pin_guard",
            ins=f"{attempt.command.ins:02x}",
            counter=attempt.counter.kind.value,
            reference=f"{attempt.counter.reference:02x}",
            tries_left=left,
            keep=self.keep,
            action=action,
        )
        return SW_BLOCKED


async def _answer(status: bytes) -> bytes:
    """The guard's own answer, as an awaitable like the card's."""
    return status


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:02x}"
