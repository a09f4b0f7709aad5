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
  again, and a wrong one would have cleared the status anyway.
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

What the guard learns is kept per card, at most :data:`MEMORY_LIMIT` counters, and forgotten
on SELECT and MANAGE CHANNEL (another application may use the same references).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import structlog

from cacard.apdu import APDUFormatError, CommandAPDU, StatusWord, instruction
from cacard.card import INS_MANAGE_CHANNEL, INS_SELECT, P1_SELECT_BY_AID
from cacard.pin_commands import Counter, PinAttempt, pin_attempt

if TYPE_CHECKING:
    from .local_readers import LocalCard

log = structlog.get_logger("daemons.vscclient")

#: Authentication method blocked: what the host sees instead of a command that was not sent.
SW_BLOCKED: Final = StatusWord.AUTHENTICATION_METHOD_BLOCKED.to_bytes(2, "big")
SW_WRONG_LENGTH: Final = StatusWord.WRONG_LENGTH.to_bytes(2, "big")
SW_INS_NOT_SUPPORTED: Final = StatusWord.INS_NOT_SUPPORTED.to_bytes(2, "big")
SW_FILE_NOT_FOUND: Final = StatusWord.FILE_NOT_FOUND.to_bytes(2, "big")
SW_SUCCESS: Final = StatusWord.SUCCESS.to_bytes(2, "big")
#: Counters the guard remembers per card; the oldest is forgotten first (forgetting only makes
#: the guard ask again, or refuse).
MEMORY_LIMIT: Final = 32
_SW1_WARNING_NVM_CHANGED: Final = 0x63
_FORGETTING_INSTRUCTIONS: Final = frozenset({INS_SELECT, INS_MANAGE_CHANNEL})


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
    """Which commands may reach the card: all when a set is empty."""

    instructions: frozenset[int] = frozenset()
    aids: frozenset[bytes] = frozenset()

    def refusal(self, apdu: bytes) -> bytes | None:
        """The status word to answer instead of forwarding ``apdu``, or None to forward it."""
        ins = instruction(apdu)
        if ins is None:
            return None  # the card itself answers malformed APDUs
        if self.instructions and ins not in self.instructions:
            return SW_INS_NOT_SUPPORTED
        if self.aids and ins == INS_SELECT:
            try:
                command = CommandAPDU.from_bytes(apdu)
            except APDUFormatError:
                # A lenient card may still select something with it.
                return SW_WRONG_LENGTH
            if command.p1 == P1_SELECT_BY_AID and not any(
                command.data.startswith(allowed) for allowed in self.aids
            ):
                return SW_FILE_NOT_FOUND
        return None


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

    def learn_from_answer(self, counter: Counter, answer: bytes) -> None:
        """After a forwarded attempt: ``63Cx``/``6983`` is the count; ``9000`` refilled it (the
        last count is still a lower bound); anything else may have spent a try."""
        left = tries_left(answer[-2:])
        if left is not None:
            self.learn(counter, left)
        elif answer[-2:] != SW_SUCCESS and counter in self.counts:
            self.learn(counter, max(self.counts[counter] - 1, 0))


@dataclass(frozen=True)
class CardGuard:
    """Stands between the host and a card: the PIN guard (``keep`` tries; 0 disables it) and
    ``policy``. One guard may serve many cards; it keeps what it learns per card object."""

    keep: int = 1
    policy: ApduPolicy = field(default_factory=ApduPolicy)
    _memory: weakref.WeakKeyDictionary[LocalCard, _CardMemory] = field(
        default_factory=weakref.WeakKeyDictionary, init=False, repr=False, compare=False
    )

    async def transmit(self, card: LocalCard, apdu: bytes) -> bytes:
        """Forward ``apdu`` to ``card``, unless the policy or the PIN guard answers it."""
        refusal = self.policy.refusal(apdu)
        if refusal is not None:
            log.warning("vscclient.apdu_refused", ins=_hex(instruction(apdu)), sw=refusal.hex())
            return refusal
        if not self.keep:
            return await card.transmit(apdu)
        try:
            attempt = pin_attempt(apdu)
        except APDUFormatError as error:
            log.warning(
                "vscclient.pin_guard",
                ins=_hex(instruction(apdu)),
                field=error.field,
                value=error.value,
                action="malformed PIN command answered 6700 without reaching the card",
            )
            return SW_WRONG_LENGTH
        memory = self._memory.get(card)
        if memory is None:
            memory = self._memory[card] = _CardMemory()
        if attempt is None:
            memory.chain = None  # any other command ends a chain on the card
            if instruction(apdu) in _FORGETTING_INSTRUCTIONS:
                memory.counts.clear()
            return await card.transmit(apdu)
        return await self._attempt(card, memory, apdu, attempt)

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

    async def _tries_left(
        self, card: LocalCard, memory: _CardMemory, counter: Counter
    ) -> int | None:
        """The tries ``counter`` has left per the card, else per what the guard learned."""
        probe, logout = counter.probe, counter.logout
        if probe is None or logout is None or not memory.may_probe(counter):
            return memory.counts.get(counter)
        answer = await card.transmit(probe)
        if answer == SW_SUCCESS:
            if counter in memory.counts:
                return memory.counts[counter]
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


def _hex(value: int | None) -> str | None:
    return None if value is None else f"{value:02x}"
