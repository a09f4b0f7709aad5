"""The PIN guard keeps a card's last tries from a guest, and the APDU allow list."""

from __future__ import annotations

import asyncio
import functools
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard import CardRequest, CardStore, generate_card
from cacard.applets.applet import RID_DOD, RID_GSC_IS
from cacard.applets.ccc import CCC_AID
from cacard.applets.gp import GP_AID
from cacard.card import CHANNELS, Card
from cacard.pin import PinState
from cacard.piv.applet import PIVApplet
from cacard.profile import Applications, CardProfile, new_card, piv_applet
from cardfloor.iso7816.apdu import APDUFormatError, CommandAPDU, instruction
from cardfloor.iso7816.instructions import INS_SELECT
from daemons.card_guard import (
    ENVELOPE_DEPTH,
    ENVELOPE_STARTS,
    MEMORY_LIMIT,
    ApduPolicy,
    CardGuard,
    tries_left,
)
from daemons.emulated_cards import EmulatedCard
from tests.cacard.cards import CARD_ID, PIN, credential, make_card, pin_state

WRONG_PIN = bytes.fromhex("0020000008") + b"11111111"
RIGHT_PIN = bytes.fromhex("0020000008") + b"77777777"


@pytest.fixture
def card(tmp_path: Path) -> EmulatedCard:
    generate_card(tmp_path / "card", CardRequest(key_size=1024, pin_iterations=1))
    return EmulatedCard(CardStore(tmp_path / "card").open_card(), "card")


@pytest.mark.parametrize(
    ("status", "left"),
    [("63C2", 2), ("63C0", 0), ("6983", 0), ("9000", None), ("6A88", None), ("63", None)],
)
def test_tries_left_reads_the_verify_status(status: str, left: int | None) -> None:
    assert tries_left(bytes.fromhex(status)) == left


async def test_a_guest_looping_wrong_pins_leaves_the_last_try(card: EmulatedCard) -> None:
    guard = CardGuard(keep=1)
    answers = [(await guard.transmit(card, WRONG_PIN)).hex() for _ in range(10)]
    # 3 tries: two wrong PINs reach the card, then the guard answers for it.
    assert answers == ["63c2", "63c1"] + ["6983"] * 8
    assert (await card.transmit(bytes.fromhex("00200000"))).hex() == "63c1"
    # The owner, without the guard, still has that last try.
    assert (await card.transmit(RIGHT_PIN)).hex() == "9000"


async def test_with_the_guard_off_a_guest_can_block_the_card(card: EmulatedCard) -> None:
    guard = CardGuard(keep=0)
    answers = [(await guard.transmit(card, WRONG_PIN)).hex() for _ in range(4)]
    assert answers == ["63c2", "63c1", "63c0", "6983"]


async def test_a_right_pin_passes_the_guard_while_tries_remain(card: EmulatedCard) -> None:
    guard = CardGuard(keep=1)
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c2"
    assert (await guard.transmit(card, RIGHT_PIN)).hex() == "9000"


async def test_after_a_reset_the_guard_starts_over_and_still_keeps_the_last_try(
    card: EmulatedCard,
) -> None:
    guard = CardGuard(keep=1)
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c2"
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "63c1"
    await card.cold_reset()  # the retry counter survives a reset; the guard asks again
    guard.forget(card)
    assert (await guard.transmit(card, WRONG_PIN)).hex() == "6983"
    assert (await card.transmit(bytes.fromhex("00200000"))).hex() == "63c1"


async def test_the_apdu_policy_answers_for_the_card(card: EmulatedCard) -> None:
    policy = ApduPolicy(frozenset({0xA4, 0xC0}), frozenset({bytes.fromhex("A000000079")}))
    guard = CardGuard(keep=1, policy=policy)
    assert (await guard.transmit(card, bytes.fromhex("00CA7F6800"))).hex() == "6d00"
    select_pki = bytes.fromhex("00A4040007A0000000790100")
    assert (await guard.transmit(card, select_pki))[-2:] in (b"\x90\x00", b"\x61\x0d")
    select_piv = bytes.fromhex("00A4040009A00000030800001000")
    assert (await guard.transmit(card, select_piv)).hex() == "6a82"


# -- every encoding --------------------------------------------------------------------------


class InProcessCard:
    """A :class:`cacard.card.Card` as a local card, without worker threads."""

    def __init__(self, card: Card) -> None:
        self.card = card

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def power_on(self) -> None:
        self.card.power_on()

    async def cold_reset(self) -> None:
        self.power_on()

    @property
    def tries(self) -> int:
        return self.card.state.pin.tries_remaining

    def selected(self) -> list[bytes]:
        """The AIDs of the applets selected on the card's channels."""
        return [
            applet.aid
            for applet in (self.card.selected(channel) for channel in range(CHANNELS))
            if applet is not None
        ]

    async def transmit(self, apdu: bytes) -> bytes:
        return self.card.transmit(apdu)


class LenientCard(InProcessCard):
    """The same card behind a lenient parser, as vsmartcard's vicc has: the class byte is
    ignored (so each chunk of a chain is a whole command), short APDUs are padded to a header,
    and an extended Le may have three bytes."""

    async def transmit(self, apdu: bytes) -> bytes:
        apdu = b"\x00" + apdu[1:].ljust(3, b"\x00")
        if len(apdu) >= 10 and apdu[4] == 0 and len(apdu) == 10 + int.from_bytes(apdu[5:7]):
            apdu = apdu[:-3] + apdu[-2:]
        return self.card.transmit(apdu)


def in_process(max_tries: int = 3, *, lenient: bool = False) -> InProcessCard:
    card = make_card(1, pin=pin_state(max_tries=max_tries))
    return LenientCard(card) if lenient else InProcessCard(card)


WRONG = b"11111111"
RIGHT = PIN.encode()

# Encodings the guard before issue 13 forwarded without asking the card.
BYPASSES = [
    pytest.param(CommandAPDU(0x00, 0x20, 0x00, 0x00, WRONG, extended=True), id="extended"),
    pytest.param(CommandAPDU(0x00, 0x20, 0x00, 0x00, WRONG, 256, extended=True), id="ext-le"),
    pytest.param(CommandAPDU(0x80, 0x20, 0x00, 0x00, WRONG, extended=True), id="cla80-ext"),
    pytest.param(CommandAPDU(0x01, 0x24, 0x00, 0x00, WRONG + RIGHT), id="change-ch1"),
    pytest.param(CommandAPDU(0x00, 0x24, 0x00, 0x00, WRONG + RIGHT, extended=True), id="change"),
]


@pytest.mark.parametrize("lenient", [False, True])
@pytest.mark.parametrize("command", BYPASSES)
async def test_no_encoding_of_a_wrong_pin_takes_the_last_try(
    command: CommandAPDU, lenient: bool
) -> None:
    card = in_process(lenient=lenient)
    guard = CardGuard(keep=1)
    answers = [(await guard.transmit(card, command.to_bytes())).hex() for _ in range(5)]
    assert answers == ["63c2", "63c1", "6983", "6983", "6983"]
    assert card.tries == 1


async def test_a_chain_may_have_no_more_chunks_than_tries_beyond_keep() -> None:
    """vicc takes each chunk of a chain as a whole VERIFY; the guard counts each as a try."""
    card = in_process(lenient=True)
    guard = CardGuard(keep=1)
    chunk = bytes.fromhex("1020000008") + WRONG
    answers = [(await guard.transmit(card, chunk)).hex() for _ in range(4)]
    final = (await guard.transmit(card, bytes.fromhex("0020000008") + WRONG)).hex()
    assert answers == ["63c2", "63c1", "6983", "6983"]
    assert final == "6983"  # the end of a refused chain is refused too
    assert card.tries == 1


async def test_a_chain_on_a_strict_card_is_judged_at_its_first_chunk() -> None:
    card = in_process(max_tries=1)
    guard = CardGuard(keep=1)
    # One try left, none to spare: the first chunk and the rest of the chain are refused.
    assert (await guard.transmit(card, bytes.fromhex("1020000004") + WRONG[:4])).hex() == "6983"
    assert (await guard.transmit(card, bytes.fromhex("0020000004") + WRONG[4:])).hex() == "6983"
    assert card.tries == 1


@pytest.mark.parametrize(
    "apdu",
    [
        "00200000000008" + WRONG.hex() + "000000",  # vicc takes this as a VERIFY
        "0020000009" + WRONG.hex(),
        "0020",
    ],
)
async def test_a_malformed_pin_command_is_answered_6700_here(apdu: str) -> None:
    card = in_process(max_tries=1, lenient=True)
    assert (await CardGuard(keep=1).transmit(card, bytes.fromhex(apdu))).hex() == "6700"
    assert card.tries == 1


async def test_a_verified_pin_can_be_verified_again_and_wrong_ones_still_stop() -> None:
    """A probe answers 9000 once verified: the guard uses what it learned, or logs out first."""
    card = in_process()
    guard = CardGuard(keep=1)
    verify = bytes.fromhex("0020000008")
    assert (await guard.transmit(card, verify + RIGHT)).hex() == "9000"
    assert (await guard.transmit(card, verify + RIGHT)).hex() == "9000"  # PIN-always signing
    await guard.transmit(card, bytes.fromhex("00A4040007A0000000790100"))  # forgets the count
    assert (await guard.transmit(card, verify + RIGHT)).hex() == "9000"
    assert card.card.pin_verified
    answers = [(await guard.transmit(card, verify + WRONG)).hex() for _ in range(4)]
    assert answers == ["63c2", "63c1", "6983", "6983"]
    assert card.tries == 1


class PivLikeCard:
    """A PIN (80, 3 tries) and a PUK that only RESET RETRY COUNTER spends (SP 800-73-4)."""

    def __init__(self) -> None:
        self.pin, self.puk = 3, 3
        self.sent: list[bytes] = []

    atr = b"\x3b\x00"

    def power_on(self) -> None:
        """Nothing to do."""

    async def cold_reset(self) -> None:
        self.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        command = CommandAPDU.from_bytes(apdu)
        if command.ins == 0x20 and command.p2 == 0x80:
            if command.data:
                self.pin -= 1
            return bytes((0x63, 0xC0 | self.pin))
        if command.ins == 0x2C and command.p2 == 0x80:
            self.puk -= 1
            return bytes((0x63, 0xC0 | self.puk))
        return b"\x6a\x88"


async def test_a_puk_whose_counter_cannot_be_asked_for_is_never_tried() -> None:
    card = PivLikeCard()
    guard = CardGuard(keep=1)
    unblock = bytes.fromhex("002C008010") + WRONG * 2
    assert (await guard.transmit(card, unblock)).hex() == "6983"
    assert card.puk == 3
    assert card.sent == []  # nothing, not even a probe: the PUK has no VERIFY
    assert (await CardGuard(keep=0).transmit(card, unblock)).hex() == "63c2"


async def test_what_the_guard_learns_per_card_is_bounded() -> None:
    card = PivLikeCard()
    guard = CardGuard(keep=1)
    for reference in range(MEMORY_LIMIT + 20):
        cla = 0x80 | (reference & 0x03)
        await guard.transmit(card, bytes((cla, 0x20, 0x00, 0x80, 0x01, 0x30)))
        await guard.transmit(card, bytes((0x00, 0x24, 0x00, reference, 0x01, 0x30)))
    memory = guard._memory[card]
    assert len(memory.counts) <= MEMORY_LIMIT
    assert len(memory.unprobed) <= MEMORY_LIMIT


@pytest.mark.parametrize(
    "select",
    [
        "00A404000009A00000030800001000",  # extended Lc
        "01A4040009A00000030800001000",  # channel 1
        "41A4040009A00000030800001000",  # channel 5
        "00A4040000000009A0000003080000100000000000",  # malformed: vicc's 3-byte Le
    ],
)
async def test_the_aid_allow_list_holds_for_every_encoding_of_select(select: str) -> None:
    card = PivLikeCard()
    guard = CardGuard(keep=1, policy=ApduPolicy(aids=frozenset({bytes.fromhex("A000000079")})))
    assert (await guard.transmit(card, bytes.fromhex(select))).hex() in ("6a82", "6700")
    assert card.sent == []


def command_strategy() -> st.SearchStrategy[bytes]:
    """PIN commands in every encoding, with other commands in between; weighted towards what
    the emulated card takes as a wrong PIN (P1=00, reference 00)."""
    classes = st.sampled_from([0x00, 0x01, 0x03, 0x0C, 0x10, 0x11, 0x45, 0x75, 0x80, 0x90, 0xC0])
    instructions = st.sampled_from([0x20] * 4 + [0x24] * 3 + [0x21, 0x25, 0x2C, 0x2D, 0xA4, 0xCA])
    data = st.sampled_from([WRONG] * 3 + [WRONG + RIGHT] * 2 + [b"", RIGHT, RIGHT + RIGHT])

    @st.composite
    def encoded(draw: st.DrawFn) -> bytes:
        cla = draw(classes | st.integers(0, 0xFF))
        ins = draw(instructions)
        p1 = draw(st.sampled_from([0x00] * 4 + [0x01, 0x02, 0xFF]))
        p2 = draw(st.sampled_from([0x00] * 4 + [0x80, 0x81]))
        extended = draw(st.booleans())
        le = draw(st.none() | st.integers(1, 256))
        raw = CommandAPDU(cla, ins, p1, p2, draw(data), le, extended=extended).to_bytes()
        mangle = draw(st.sampled_from(["none"] * 4 + ["append", "drop"]))
        if mangle == "append":
            raw += b"\x00"  # an extended case 4 with it is vicc's 3-byte Le
        elif mangle == "drop":
            raw = raw[:-1]
        return raw

    return encoded()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keep=st.integers(1, 3),
    max_tries=st.integers(1, 5),
    lenient=st.booleans(),
    commands=st.lists(command_strategy(), min_size=1, max_size=15),
)
def test_through_the_guard_a_counter_never_goes_below_keep(
    keep: int, max_tries: int, lenient: bool, commands: list[bytes]
) -> None:
    card = in_process(max_tries, lenient=lenient)
    guard = CardGuard(keep=keep)
    floor = min(keep, max_tries)

    async def run() -> None:
        for apdu in commands:
            await guard.transmit(card, apdu)
            assert card.tries >= floor, apdu.hex()

    asyncio.run(run())


# -- ENVELOPE --------------------------------------------------------------------------------

ENVELOPE_MODES = ["each", "length", "terminator"]


class EnvelopeCard(InProcessCard):
    """A card that executes ENVELOPE (ISO/IEC 7816-4:2013 §11.7.2), which the emulated card does
    not: the data goes on to ``inner`` (strict or vicc-like lenient) as a command. ``mode``:
    ``each`` executes each ENVELOPE's data alone; ``length`` gathers consecutive data until the
    card's parser reads a whole command; ``terminator`` until an empty ENVELOPE. A part that does
    not end a command is answered 9000; an ENVELOPE inside one is unwrapped alike with its own
    buffer. Other commands leave the buffers alone (the worst case for the guard)."""

    def __init__(self, inner: InProcessCard, mode: str) -> None:
        super().__init__(inner.card)
        self.inner = inner
        self.mode = mode
        self.buffers: dict[int, bytes] = {}
        self.executed: list[bytes] = []

    async def transmit(self, apdu: bytes) -> bytes:
        return await self._run(apdu, 0)

    async def _run(self, apdu: bytes, depth: int) -> bytes:
        if instruction(apdu) != 0xC2 or depth > ENVELOPE_DEPTH + 2:
            if depth:
                self.executed.append(apdu)
            return await self.inner.transmit(apdu)
        try:
            data = CommandAPDU.from_bytes(apdu).data
        except APDUFormatError:
            return b"\x67\x00"
        held = self.buffers.pop(depth, b"")
        if not data:
            return await self._run(held, depth + 1) if held else b"\x90\x00"
        if self.mode == "each":
            return await self._run(data, depth + 1)
        held += data
        if self.mode == "length":
            try:
                CommandAPDU.from_bytes(held)
            except APDUFormatError:
                pass
            else:
                return await self._run(held, depth + 1)
        self.buffers[depth] = held
        return b"\x90\x00"


def envelope(data: bytes, cla: int = 0x00) -> bytes:
    return CommandAPDU(cla, 0xC2, 0x00, 0x00, data, extended=len(data) > 255).to_bytes()


def enveloped(mode: str, max_tries: int = 3, *, lenient: bool = False) -> EnvelopeCard:
    return EnvelopeCard(in_process(max_tries, lenient=lenient), mode)


END = envelope(b"")
VERIFY_WRONG = bytes.fromhex("0020000008") + WRONG
PKI_AID = RID_GSC_IS + b"\x01\x00"  # the emulated card's first PKI applet
ALLOW_GSC_IS = ApduPolicy(aids=frozenset({RID_GSC_IS}))  # not the CCC, GlobalPlatform, ...


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
async def test_a_verify_in_an_envelope_is_judged_like_a_bare_one(mode: str) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=1)
    answers = []
    for _ in range(4):
        answers.append((await guard.transmit(card, envelope(VERIFY_WRONG))).hex())
        answers.append((await guard.transmit(card, END)).hex())
    assert card.tries == 1
    assert answers[-2:] == ["6983", "9000"]  # refused here; the sequence end holds nothing
    assert "63c1" in answers  # the tries beyond keep were the guest's to spend


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
async def test_a_verify_inside_an_envelope_inside_an_envelope_is_judged_too(mode: str) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=1)
    for _ in range(4):
        await guard.transmit(card, envelope(envelope(VERIFY_WRONG)))
        await guard.transmit(card, END)
        await guard.transmit(card, envelope(END))  # a terminator card executes it here
        await guard.transmit(card, END)
    assert card.tries == 1
    too_deep = VERIFY_WRONG
    for _ in range(ENVELOPE_DEPTH + 1):
        too_deep = envelope(too_deep)
    assert (await guard.transmit(enveloped(mode), too_deep)).hex() == "6983"


@pytest.mark.parametrize("mode", ["length", "terminator"])
@pytest.mark.parametrize("cut", [1, 2, 3, 5, 6, 7, 9])
async def test_a_split_verify_is_refused_to_its_end(mode: str, cut: int) -> None:
    card = enveloped(mode, max_tries=5)
    guard = CardGuard(keep=1)
    verify = CommandAPDU(0x00, 0x20, 0x00, 0x00, WRONG, extended=True).to_bytes()
    parts = [envelope(verify[:cut]), envelope(verify[cut:12]), envelope(verify[12:]), END]
    answers = [(await guard.transmit(card, part)).hex() for part in parts]
    if cut not in (1, 5, 7):  # those first parts are whole (a status query) or a lone CLA
        assert answers[:3] == ["6983"] * 3
    assert card.tries == 5
    assert not any(command[1:2] == b"\x20" and len(command) > 7 for command in card.executed)
    # The sequence is over: the first part of a long SELECT reaches the card again.
    first = bytes.fromhex("00A40400000007A000000079")
    assert (await guard.transmit(card, envelope(first))).hex() == "9000"


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
@pytest.mark.parametrize("lenient", [False, True])
async def test_a_long_command_in_envelopes_passes_unchanged(mode: str, lenient: bool) -> None:
    """T=0 sends an extended command in 255-byte parts; parts that look like PIN commands are
    data here, and reach the card as such."""
    data = bytearray(range(256)) * 3
    command = bytearray(CommandAPDU(0x00, 0xDB, 0x3F, 0xFF, bytes(data), extended=True).to_bytes())
    for offset in (255, 510):  # each later part starts with a wrong-PIN VERIFY
        command[offset : offset + len(VERIFY_WRONG)] = VERIFY_WRONG
    parts = [bytes(command[offset : offset + 255]) for offset in range(0, len(command), 255)]
    card = enveloped(mode, lenient=lenient)
    guard = CardGuard(keep=1)
    answers = [(await guard.transmit(card, envelope(part))).hex() for part in parts]
    if mode == "terminator":
        answers.append((await guard.transmit(card, END)).hex())
    assert card.tries == 3
    if mode != "each":  # a card that takes each part alone rejects them (none is whole)
        assert set(answers[:-1]) == {"9000"}
        assert card.executed == [bytes(command)]


async def test_a_status_query_in_an_envelope_cannot_grow_into_a_verify() -> None:
    card = enveloped("terminator", max_tries=1)
    guard = CardGuard(keep=1)
    assert (await guard.transmit(card, envelope(bytes.fromhex("00200000")))).hex() == "9000"
    assert (await guard.transmit(card, envelope(b"\x08" + WRONG))).hex() == "6983"
    assert (await guard.transmit(card, END)).hex() == "63c1"  # the status query, executed
    assert card.tries == 1


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
async def test_a_header_split_before_its_instruction_is_followed(mode: str) -> None:
    card = enveloped(mode, max_tries=1)
    guard = CardGuard(keep=1)
    await guard.transmit(card, envelope(b"\x00"))
    answer = (await guard.transmit(card, envelope(VERIFY_WRONG[1:]))).hex()
    await guard.transmit(card, END)
    # A card that takes each ENVELOPE alone rejected the lone CLA; the others may join them.
    assert answer == ("6700" if mode == "each" else "6983")
    assert card.tries == 1


@pytest.mark.parametrize("cla", [0x00, 0x01, 0x80])
async def test_an_attempt_an_envelope_may_still_hold_counts_against_bare_ones(cla: int) -> None:
    """Also on another channel or class, which may name the same PIN (found by the property
    below)."""
    card = enveloped("terminator")
    guard = CardGuard(keep=1)
    bare = bytes((cla,)) + VERIFY_WRONG[1:]
    assert (await guard.transmit(card, envelope(VERIFY_WRONG))).hex() == "9000"  # held
    assert (await guard.transmit(card, bare)).hex() == "63c2"
    assert (await guard.transmit(card, bare)).hex() == "6983"  # 2 left, 1 held
    assert (await guard.transmit(card, envelope(VERIFY_WRONG))).hex() == "6983"
    assert (await guard.transmit(card, END)).hex() == "63c1"
    assert card.tries == 1


async def test_odd_envelope_is_not_supported_with_the_guard_on() -> None:
    card = enveloped("each")
    tlv = bytes((0x53, len(VERIFY_WRONG))) + VERIFY_WRONG
    odd = CommandAPDU(0x00, 0xC3, 0x00, 0x00, tlv).to_bytes()
    assert (await CardGuard(keep=1).transmit(card, odd)).hex() == "6d00"
    assert (await CardGuard(keep=1).transmit(card, envelope(odd))).hex() == "6983"
    assert card.executed == []


async def test_a_malformed_envelope_is_answered_6700_here() -> None:
    card = enveloped("each", max_tries=1, lenient=True)
    malformed = bytes.fromhex("00C2000009") + VERIFY_WRONG[:8]
    assert (await CardGuard(keep=1).transmit(card, malformed)).hex() == "6700"
    assert card.executed == []


@pytest.mark.parametrize("keep", [0, 1])
async def test_what_the_guard_follows_of_envelopes_is_bounded(keep: int) -> None:
    card = enveloped("terminator")
    guard = CardGuard(keep=keep, policy=ALLOW_GSC_IS)
    for index in range(200):
        await guard.transmit(card, envelope(bytes((index % 7, 0x20, 0x20, 0x00, 0x80))))
        await guard.transmit(card, envelope(b"\x00"))
    memory = guard._memory[card]
    assert len(memory.pin_envelopes.starts) <= ENVELOPE_STARTS
    assert len(memory.policy_envelopes.starts) <= ENVELOPE_STARTS
    assert card.tries == 3 or not keep


def envelope_steps(
    commands: st.SearchStrategy[bytes] | None = None,
) -> st.SearchStrategy[list[bytes]]:
    """A command from ``commands`` (wrong PINs and :func:`command_strategy` by default), bare or
    in ENVELOPEs of any class: whole, nested, split at any points (with or without empty
    ENVELOPEs after), split inside a nested ENVELOPE."""

    wrong_pins = st.builds(
        lambda cla, ins, data, le, extended: CommandAPDU(
            cla, ins, 0x00, 0x00, data, le, extended=extended
        ).to_bytes(),
        st.sampled_from([0x00, 0x01, 0x10, 0x45, 0x80]),
        st.sampled_from([0x20, 0x20, 0x24]),
        st.sampled_from([WRONG, WRONG + RIGHT]),
        st.none() | st.integers(1, 256),
        st.booleans(),
    )

    def split(draw: st.DrawFn, command: bytes) -> list[bytes]:
        # Cuts inside the header and its lengths are weighted: that is where a guard loses track.
        last = max(len(command) - 1, 1)
        cut = st.integers(1, min(8, last)) | st.integers(1, last)
        bounds = [0, *sorted(draw(st.sets(cut, max_size=4))), len(command)]
        return [command[a:b] for a, b in itertools.pairwise(bounds) if b > a]

    @st.composite
    def steps(draw: st.DrawFn) -> list[bytes]:
        command = draw(wrong_pins | command_strategy() if commands is None else commands)
        how = draw(st.sampled_from(["bare", "whole", "nested", "split", "split", "nested split"]))
        ends = draw(st.sampled_from([[], [END], [END, END]]))
        # The instruction decides: a channel or proprietary class (80 C2) is an ENVELOPE too.
        cla = draw(st.sampled_from([0x00, 0x00, 0x00, 0x01, 0x80, 0x83]))

        def wrap(data: bytes) -> bytes:
            return envelope(data, cla)

        if how == "bare":
            return [command]
        if how == "whole":
            return [wrap(command), *ends]
        if how == "nested":
            return [wrap(wrap(command)), END, wrap(END), *ends]
        if how == "split":
            return [*(wrap(part) for part in split(draw, command)), *ends]
        # Each part ends its outer sequence, so that the inner one gathers the parts.
        nested = [[wrap(wrap(part)), END] for part in split(draw, command)]
        return [*itertools.chain.from_iterable(nested), wrap(END), END, *ends]

    return steps()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keep=st.integers(1, 3),
    max_tries=st.integers(1, 5),
    lenient=st.booleans(),
    mode=st.sampled_from(ENVELOPE_MODES),
    steps=st.lists(envelope_steps(), min_size=1, max_size=12),
)
def test_through_envelopes_a_counter_never_goes_below_keep(
    keep: int, max_tries: int, lenient: bool, mode: str, steps: list[list[bytes]]
) -> None:
    card = enveloped(max_tries=max_tries, mode=mode, lenient=lenient)
    guard = CardGuard(keep=keep)
    floor = min(keep, max_tries)

    async def run() -> None:
        for step in steps:
            for apdu in step:
                await guard.transmit(card, apdu)
                assert card.tries >= floor, apdu.hex()

    asyncio.run(run())


# -- the allow list and ENVELOPE -------------------------------------------------------------


def select(aid: bytes, cla: int = 0x00, p2: int = 0x00, *, extended: bool = False) -> bytes:
    return CommandAPDU(cla, INS_SELECT, 0x04, p2, aid, extended=extended).to_bytes()


def delivered(command: bytes, depth: int) -> list[bytes]:
    """ENVELOPEs that bring ``command`` ``depth`` ENVELOPEs deep on a card of any mode: each
    level's sequence is ended, so that a terminator card executes what it gathered."""
    if not depth:
        return [command]
    return [*delivered(envelope(command), depth - 1), *delivered(END, depth - 1)]


@pytest.mark.parametrize("keep", [0, 1])
async def test_with_allow_ins_without_c2_every_envelope_is_refused(keep: int) -> None:
    card = enveloped("each")
    guard = CardGuard(keep=keep, policy=ApduPolicy(frozenset({0xA4, 0xC0})))
    for apdu in (envelope(select(PKI_AID)), envelope(select(CCC_AID), 0x80), END):
        assert (await guard.transmit(card, apdu)).hex() == "6d00"
    assert card.executed == []


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
@pytest.mark.parametrize("keep", [0, 1])
async def test_an_instruction_inside_an_envelope_must_be_on_the_allow_list(
    mode: str, keep: int
) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=keep, policy=ApduPolicy(frozenset({0xA4, 0xC0, 0xC2})))
    get_challenge = bytes.fromhex("0084000008")
    assert (await guard.transmit(card, envelope(get_challenge))).hex() == "6d00"
    assert (await guard.transmit(card, envelope(envelope(get_challenge)))).hex() == "6d00"
    assert (await guard.transmit(card, END)).hex() == "9000"
    assert card.executed == []
    for apdu in delivered(select(PKI_AID), 1):  # SELECT is listed: it reaches the card
        await guard.transmit(card, apdu)
    assert card.selected() == [PKI_AID]


@pytest.mark.parametrize("mode", ["length", "terminator"])
async def test_a_split_command_whose_instruction_is_not_allowed_is_refused_to_its_end(
    mode: str,
) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=0, policy=ApduPolicy(frozenset({0xA4, 0xC2})))
    put_data = CommandAPDU(0x00, 0xDB, 0x3F, 0xFF, bytes(300), extended=True).to_bytes()
    parts = [put_data[:1], put_data[1:100], put_data[100:]]
    answers = [(await guard.transmit(card, envelope(part))).hex() for part in parts]
    # A lone CLA may still become anything: followed, and judged once its instruction comes.
    assert answers == ["9000", "6d00", "6d00"]
    await guard.transmit(card, END)
    assert not any(instruction(command) == 0xDB for command in card.executed)


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
@pytest.mark.parametrize("keep", [0, 1])
@pytest.mark.parametrize("depth", range(1, ENVELOPE_DEPTH + 1))
async def test_a_select_of_an_applet_not_allowed_is_refused_inside_envelopes(
    mode: str, keep: int, depth: int
) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=keep, policy=ALLOW_GSC_IS)
    forbidden = delivered(select(CCC_AID, 0x81), depth)
    assert (await guard.transmit(card, forbidden[0])).hex() == "6a82"
    for apdu in forbidden[1:]:
        await guard.transmit(card, apdu)
    assert card.selected() == []
    for apdu in delivered(select(PKI_AID), depth):  # an allowed one reaches the card
        await guard.transmit(card, apdu)
    # ... unless only an empty ENVELOPE two deep would execute it: a nested part that may still
    # grow is refused (the guard follows no sequence there).
    reached = mode != "terminator" or depth < ENVELOPE_DEPTH
    assert card.selected() == ([PKI_AID] if reached else [])


@pytest.mark.parametrize("mode", ["length", "terminator"])
@pytest.mark.parametrize("aid", [PKI_AID, CCC_AID], ids=["allowed", "forbidden"])
@pytest.mark.parametrize("cut", [2, 3, 4, 6, 8, 11])
async def test_a_select_by_aid_split_across_envelopes_is_refused(
    mode: str, aid: bytes, cut: int
) -> None:
    """Only the first bytes of a split command are kept: its AID cannot be judged, even an
    allowed one (a long SELECT over T=0 still fits one ENVELOPE)."""
    card = enveloped(mode)
    guard = CardGuard(keep=1, policy=ALLOW_GSC_IS)
    command = select(aid, extended=True)
    parts = [command[:cut], command[cut:12], command[12:]]
    answers = [(await guard.transmit(card, envelope(part))).hex() for part in parts]
    await guard.transmit(card, END)
    refused = answers.index("6a82")
    if cut != 4:  # 00 A4 04 00 is whole (an empty AID), so refused alone: the rest is new data
        assert answers[refused:] == ["6a82"] * (3 - refused)
    assert card.selected() == []
    assert not any(command[1:3] == b"\xa4\x04" for command in card.executed)


@pytest.mark.parametrize(
    "part",
    ["00", "00A4", "00A404", "00A4040007A000"],
    ids=["cla", "ins", "p1", "part"],
)
async def test_inside_a_nested_envelope_a_part_that_may_become_a_select_is_refused(
    part: str,
) -> None:
    card = enveloped("terminator")
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    steps = [envelope(envelope(bytes.fromhex(part))), END, envelope(END), END]
    assert (await guard.transmit(card, steps[0])).hex() == "6a82"
    for apdu in steps[1:]:
        await guard.transmit(card, apdu)
    assert card.executed == []


@pytest.mark.parametrize(
    ("allowed", "aid"),
    [(PKI_AID, PKI_AID), (RID_GSC_IS, PKI_AID), (RID_GSC_IS, RID_GSC_IS)],
    ids=["exact", "longer", "prefix"],
)
@pytest.mark.parametrize("p2", [0x01, 0x02, 0x03, 0x0E], ids=["last", "next", "prev", "next-0c"])
async def test_a_select_of_another_occurrence_is_refused_by_an_aid_allow_list(
    allowed: bytes, aid: bytes, p2: int
) -> None:
    """Which applet a card picks then depends on an order only the card knows."""
    card = enveloped("each")
    guard = CardGuard(keep=0, policy=ApduPolicy(aids=frozenset({allowed})))
    assert (await guard.transmit(card, select(aid, p2=p2))).hex() == "6a82"
    assert (await guard.transmit(card, envelope(select(aid, p2=p2)))).hex() == "6a82"
    assert card.selected() == []
    first = select(PKI_AID, p2=p2 & ~0x03)  # the first or only occurrence: FCI or none
    assert (await guard.transmit(card, first)).hex() in ("610d", "9000")
    assert card.selected() == [PKI_AID]


@pytest.mark.parametrize(
    ("policy", "inside"),
    [(ALLOW_GSC_IS, "6a82"), (ApduPolicy(frozenset({0xA4, 0xC2, 0xC3})), "6d00")],
    ids=["aids", "ins-with-c3"],
)
async def test_an_odd_envelope_is_refused_by_an_allow_list(policy: ApduPolicy, inside: str) -> None:
    """Its BER-TLV data is not read, so a listed C3 is refused too; inside an ENVELOPE, with what
    the policy answers to what it cannot judge."""
    tlv = bytes((0x53, 11)) + select(CCC_AID)
    odd = CommandAPDU(0x00, 0xC3, 0x00, 0x00, tlv).to_bytes()
    bare = PivLikeCard()
    assert (await CardGuard(keep=0, policy=policy).transmit(bare, odd)).hex() == "6d00"
    assert bare.sent == []
    card = enveloped("each")
    assert (await CardGuard(keep=0, policy=policy).transmit(card, envelope(odd))).hex() == inside
    assert card.executed == []


@functools.cache
def applet_aids() -> tuple[bytes, ...]:
    """The AIDs of the emulated card's applets."""
    return tuple(in_process().card.applets)


def select_strategy() -> st.SearchStrategy[bytes]:
    """SELECTs of the emulated card's applets in every encoding: any class (channels,
    proprietary, chained, secure messaging), AIDs whole, cut short, extended or empty, any
    occurrence, short and extended lengths, vicc's 3-byte Le and a byte too few."""

    @st.composite
    def selects(draw: st.DrawFn) -> bytes:
        aid = draw(st.sampled_from(applet_aids()))
        shape = draw(st.sampled_from(["whole"] * 5 + ["short", "long", "empty"]))
        if shape == "short":
            aid = aid[: draw(st.integers(1, len(aid) - 1))]
        elif shape == "long":
            aid += b"\x00"
        elif shape == "empty":
            aid = b""
        cla = draw(st.sampled_from([0x00] * 4 + [0x01, 0x03, 0x0C, 0x10, 0x41, 0x81, 0x92, 0xA3]))
        p1 = draw(st.sampled_from([0x04] * 6 + [0x00, 0x02]))
        p2 = draw(st.sampled_from([0x00] * 4 + [0x0C, 0x01, 0x02, 0x03, 0x0E]))
        le = draw(st.none() | st.sampled_from([13, 256]))
        raw = CommandAPDU(cla, INS_SELECT, p1, p2, aid, le, extended=draw(st.booleans()))
        encoded = raw.to_bytes()
        mangle = draw(st.sampled_from(["none"] * 6 + ["append", "drop"]))
        if mangle == "append":
            encoded += b"\x00"
        elif mangle == "drop":
            encoded = encoded[:-1]
        return encoded

    return selects()


POLICY_INSTRUCTIONS = frozenset({0xA4, 0xC0, 0xC2, 0xCA, 0x20})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    aids=st.sets(st.sampled_from([RID_GSC_IS, PKI_AID, RID_DOD, GP_AID]), min_size=1, max_size=2),
    listed=st.booleans(),
    keep=st.sampled_from([0, 1]),
    lenient=st.booleans(),
    mode=st.sampled_from(ENVELOPE_MODES),
    steps=st.lists(
        envelope_steps(st.one_of(select_strategy(), select_strategy(), command_strategy())),
        min_size=1,
        max_size=10,
    ),
)
def test_through_envelopes_no_applet_outside_the_allow_list_is_selected(
    aids: set[bytes],
    listed: bool,
    keep: int,
    lenient: bool,
    mode: str,
    steps: list[list[bytes]],
) -> None:
    instructions = POLICY_INSTRUCTIONS if listed else frozenset()
    policy = ApduPolicy(instructions, frozenset(aids))
    card = enveloped(mode, lenient=lenient)
    guard = CardGuard(keep=keep, policy=policy)

    async def run() -> None:
        for step in steps:
            for apdu in step:
                await guard.transmit(card, apdu)
                for aid in card.selected():
                    assert any(aid.startswith(prefix) for prefix in aids), (apdu.hex(), aid.hex())
                if listed:
                    for command in card.executed:
                        assert instruction(command) in {None, *instructions}, command.hex()

    asyncio.run(run())


class SharedCounterCard:
    """PIV's global PIN (00) and application PIN (80) as one counter with a verified state each,
    which a wrong try through the other reference leaves as it is."""

    def __init__(self) -> None:
        self.tries = 3
        self.verified = {0x00: False, 0x80: False}

    atr = b"\x3b\x00"

    def power_on(self) -> None:
        """Nothing to do."""

    async def cold_reset(self) -> None:
        self.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        command = CommandAPDU.from_bytes(apdu)
        if command.ins != 0x20 or command.p2 not in self.verified:
            return b"\x6a\x88"
        if command.p1 == 0xFF:
            self.verified[command.p2] = False
            return b"\x90\x00"
        if not command.data:
            if self.verified[command.p2]:
                return b"\x90\x00"
            return bytes((0x63, 0xC0 | self.tries))
        if self.tries == 0:
            return b"\x69\x83"
        self.verified[command.p2] = False
        if command.data == RIGHT:
            self.tries = 3
            self.verified[command.p2] = True
            return b"\x90\x00"
        self.tries -= 1
        return bytes((0x63, 0xC0 | self.tries))


async def test_a_verified_reference_does_not_hide_wrong_tries_through_another() -> None:
    """After wrong PINs through 80, a 9000 to the probe of a verified 00 is no count: the guard
    logs 00 out and asks again, and keeps the last try."""
    card = SharedCounterCard()
    guard = CardGuard(keep=1)
    verify_00, verify_80 = bytes.fromhex("0020000008"), bytes.fromhex("0020008008")
    assert (await guard.transmit(card, verify_00 + RIGHT)).hex() == "9000"
    assert (await guard.transmit(card, verify_00 + RIGHT)).hex() == "9000"  # still trusted
    answers = [(await guard.transmit(card, verify_80 + WRONG)).hex() for _ in range(3)]
    assert answers == ["63c2", "63c1", "6983"]
    assert (await guard.transmit(card, verify_00 + WRONG)).hex() == "6983"
    assert card.tries == 1


# -- PIV --------------------------------------------------------------------------------------

PIV_SELECT = bytes.fromhex("00A4040009A00000030800001000")
PUK = b"12345678"


def piv_card(
    applications: Applications, max_tries: int, puk_tries: int
) -> tuple[InProcessCard, PIVApplet]:
    """A profile card with PIV (the card's PIN is the application PIN, and a PUK); its applet."""
    profile = CardProfile(
        tuple(credential(i) for i in range(3)), CARD_ID, applications=applications
    )
    puk = PinState.create(PUK.decode(), max_tries=puk_tries, iterations=1)
    applet = piv_applet(profile, puk)
    return InProcessCard(new_card(profile, pin_state(max_tries=max_tries), piv=applet)), applet


def piv_command_strategy() -> st.SearchStrategy[bytes]:
    """PIV's PIN and PUK commands (VERIFY 00/80, CHANGE REFERENCE DATA 80/81, RESET RETRY
    COUNTER 80) in every encoding, wrong and right, with SELECTs of PIV between them."""
    pin, puk = RIGHT, PUK

    @st.composite
    def encoded(draw: st.DrawFn) -> bytes:
        if draw(st.integers(0, 9)) == 0:
            return PIV_SELECT
        cla = draw(st.sampled_from([0x00, 0x00, 0x00, 0x01, 0x10, 0x0C, 0x80]))
        ins, p2, data = draw(
            st.sampled_from(
                [
                    (0x20, 0x80, WRONG),
                    (0x20, 0x80, WRONG),
                    (0x20, 0x00, WRONG),
                    (0x20, 0x80, pin),
                    (0x20, 0x80, b""),
                    (0x24, 0x80, WRONG + pin),
                    (0x24, 0x80, pin + pin),
                    (0x24, 0x81, WRONG + puk),
                    (0x24, 0x81, puk + puk),
                    (0x2C, 0x80, WRONG + pin),
                    (0x2C, 0x80, puk + pin),
                ]
            )
        )
        extended = draw(st.booleans())
        le = draw(st.none() | st.just(256))
        return CommandAPDU(cla, ins | draw(st.sampled_from([0, 0, 1])), 0x00, p2, data, le,
                           extended=extended).to_bytes()  # fmt: skip

    return encoded()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    applications=st.sampled_from([Applications.PIV, Applications.CAC_PIV]),
    keep=st.integers(1, 3),
    max_tries=st.integers(1, 5),
    puk_tries=st.integers(1, 5),
    commands=st.lists(piv_command_strategy(), min_size=1, max_size=15),
)
def test_through_the_guard_no_piv_counter_goes_below_keep(
    applications: Applications, keep: int, max_tries: int, puk_tries: int, commands: list[bytes]
) -> None:
    card, applet = piv_card(applications, max_tries, puk_tries)
    guard = CardGuard(keep=keep)

    async def run() -> None:
        answer = await guard.transmit(card, PIV_SELECT)
        assert answer[-2:] == b"\x90\x00" or answer[-2] == 0x61  # the template, or 61xx
        for apdu in commands:
            await guard.transmit(card, apdu)
            assert card.tries >= min(keep, max_tries), apdu.hex()
            # The PUK's counter cannot be asked for: no try of it is ever spent.
            assert applet.puk.tries_remaining == puk_tries, apdu.hex()

    asyncio.run(run())
