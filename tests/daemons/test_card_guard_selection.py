"""The AID allow list holds for every way a command may select an application: SELECT by file
identifier, child or parent DF, path or an RFU P1, and MANAGE CHANNEL, in every encoding and
class, bare or inside ENVELOPEs; a CAC applet's own objects (SELECT P1=02) stay reachable."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cacard.applets.applet import RID_DOD, RID_GSC_IS
from cacard.applets.ccc import CCC_AID
from cacard.applets.gp import GP_AID
from cacard.select_commands import SelectForm
from cardfloor.iso7816.apdu import APDUFormatError, CommandAPDU, instruction, logical_channel
from cardfloor.iso7816.instructions import INS_ENVELOPE, INS_MANAGE_CHANNEL, INS_SELECT
from daemons.card_guard import ApduPolicy, CardGuard
from tests.daemons.test_card_guard import (
    END,
    ENVELOPE_MODES,
    PKI_AID,
    delivered,
    envelope,
    envelope_steps,
    enveloped,
    in_process,
    select,
)

ALLOW_GSC_IS = ApduPolicy(aids=frozenset({RID_GSC_IS}))
#: Every SELECT P1 but by AID (04) and an EF under the current DF (02): the ISO forms that may
#: reach another DF, and RFU values a card reads as it likes.
LEAVING_FORMS = [0x00, 0x01, 0x03, 0x08, 0x09, 0x05, 0x07, 0x0A, 0x0C, 0x84, 0xFF]
#: Classes a card reads a SELECT in: channels of both interindustry ranges, proprietary (a
#: lenient card ignores the class), chained, secure messaging.
CLASSES = [0x00, 0x01, 0x03, 0x0C, 0x10, 0x13, 0x41, 0x4F, 0x61, 0x80, 0x83, 0x90, 0xC0]


def encodings(cla: int, ins: int, p1: int, p2: int, data: bytes) -> list[bytes]:
    """A command in every length encoding: short and extended, without and with Le."""
    return [
        CommandAPDU(cla, ins, p1, p2, data, le, extended=extended).to_bytes()
        for extended in (False, True)
        for le in (None, 256)
    ]


class RecordingCard:
    """A card that answers 9000 to everything and keeps what reached it."""

    atr = b"\x3b\x00"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def power_on(self) -> None:
        """Nothing to do."""

    async def cold_reset(self) -> None:
        self.power_on()

    async def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        return b"\x90\x00"


@pytest.mark.parametrize("p1", LEAVING_FORMS, ids=lambda p1: f"p1-{p1:02x}")
@pytest.mark.parametrize("cla", CLASSES, ids=lambda cla: f"cla-{cla:02x}")
@pytest.mark.parametrize(
    "data", [b"", b"\x3f\x00", b"\x50\x00", b"\x3f\x00\x50\x00\x01\x01"], ids=len
)
async def test_a_select_that_may_leave_the_allowed_applets_is_answered_6a82(
    p1: int, cla: int, data: bytes
) -> None:
    """By file identifier, child or parent DF, path or an RFU P1: which application that reaches
    only the card knows, so the guest sees no such file, as for an AID not allowed."""
    card = RecordingCard()
    guard = CardGuard(keep=1, policy=ALLOW_GSC_IS)
    for apdu in encodings(cla, INS_SELECT, p1, 0x00, data):
        assert (await guard.transmit(card, apdu)).hex() == "6a82", apdu.hex()
        assert (await guard.transmit(card, envelope(apdu))).hex() == "6a82", apdu.hex()
    assert card.sent == []


@pytest.mark.parametrize("cla", CLASSES, ids=lambda cla: f"cla-{cla:02x}")
@pytest.mark.parametrize("p2", [0x00, 0x04, 0x0C])
async def test_a_select_of_an_ef_under_the_current_df_passes_unchanged(cla: int, p2: int) -> None:
    """P1=02 stays in the applet the host selected (a CAC applet's SELECT OBJECT)."""
    card = RecordingCard()
    guard = CardGuard(keep=1, policy=ALLOW_GSC_IS)
    sent = encodings(cla, INS_SELECT, SelectForm.EF_UNDER_CURRENT_DF, p2, b"\x01\x00")
    for apdu in sent:
        assert (await guard.transmit(card, apdu)).hex() == "9000"
    assert card.sent == sent


async def test_cac_objects_stay_readable_behind_an_aid_allow_list() -> None:
    """What OpenSC's CAC driver sends (card-cac.c, cac_select_file_by_type): SELECT by AID,
    then SELECT P1=02 of an object, then READ BUFFER, on the emulated card."""
    card = in_process()
    guard = CardGuard(keep=1, policy=ApduPolicy(aids=frozenset({CCC_AID})))
    answer = await guard.transmit(card, bytes.fromhex("00A4040007") + CCC_AID + b"\x00")
    assert answer[-2:] == b"\x90\x00"
    assert (await guard.transmit(card, bytes.fromhex("00A4020002DB00"))).hex() == "9000"
    read = await guard.transmit(card, bytes.fromhex("8052000002010200"))  # the T-buffer's start
    assert read[-2:] == b"\x90\x00"
    assert len(read) > 2
    assert card.selected() == [CCC_AID]


@pytest.mark.parametrize("cla", CLASSES, ids=lambda cla: f"cla-{cla:02x}")
@pytest.mark.parametrize("p1", [0x00, 0x01, 0x7F, 0x81, 0xFF], ids=lambda p1: f"p1-{p1:02x}")
@pytest.mark.parametrize("p2", [0x00, 0x01, 0x03, 0x13])
async def test_opening_a_logical_channel_is_answered_6881(cla: int, p1: int, p2: int) -> None:
    """The card would select an application of its own choosing on the new channel (a Java
    Card's default applet); every P1 but a close may open one."""
    card = RecordingCard()
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    for apdu in [
        CommandAPDU(cla, INS_MANAGE_CHANNEL, p1, p2, le=1).to_bytes(),
        CommandAPDU(cla, INS_MANAGE_CHANNEL, p1, p2).to_bytes(),
        CommandAPDU(cla, INS_MANAGE_CHANNEL, p1, p2, le=1, extended=True).to_bytes(),
    ]:
        assert (await guard.transmit(card, apdu)).hex() == "6881", apdu.hex()
        assert (await guard.transmit(card, envelope(apdu))).hex() == "6881", apdu.hex()
    assert card.sent == []


async def test_closing_a_logical_channel_passes() -> None:
    card = RecordingCard()
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    close = bytes.fromhex("00708001")
    assert (await guard.transmit(card, close)).hex() == "9000"
    assert card.sent == [close]


@pytest.mark.parametrize("apdu", ["00A40000033F", "00A40000023F", "00A4080000023F00", "0070"])
async def test_a_malformed_select_or_manage_channel_is_answered_6700(apdu: str) -> None:
    """A lenient card may still select something with it."""
    card = RecordingCard()
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    assert (await guard.transmit(card, bytes.fromhex(apdu))).hex() == "6700"
    assert card.sent == []


async def test_without_an_aid_allow_list_every_select_passes() -> None:
    card = RecordingCard()
    guard = CardGuard(keep=0, policy=ApduPolicy(frozenset({INS_SELECT, INS_MANAGE_CHANNEL})))
    sent = [bytes.fromhex("00A40000023F00"), bytes.fromhex("00A40800025000"), b"\x00\x70\x00\x00"]
    for apdu in sent:
        assert (await guard.transmit(card, apdu)).hex() == "9000"
    assert card.sent == sent


@pytest.mark.parametrize("mode", ["length", "terminator"])
@pytest.mark.parametrize("cut", [1, 2, 3, 4, 5])
async def test_a_select_by_file_identifier_split_across_envelopes_is_refused(
    mode: str, cut: int
) -> None:
    """It is judged as soon as its instruction is there (a lenient card pads ``00 A4`` to a
    SELECT of the MF); the rest of it is refused too."""
    card = enveloped(mode)
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    command = bytes.fromhex("00A4000002DB00")
    answers = [
        (await guard.transmit(card, envelope(part))).hex()
        for part in (command[:cut], command[cut:])
    ]
    answers.append((await guard.transmit(card, END)).hex())
    refused = answers.index("6a82")
    assert refused == (0 if cut >= 2 else 1)
    if cut < 4:  # 00 A4 00 00 (02) is whole (a case 1 or 2), refused alone: the rest is new data
        assert answers[refused:2] == ["6a82"] * (2 - refused)
    assert not any(instruction(executed) == INS_SELECT for executed in card.executed)


@pytest.mark.parametrize("mode", ["length", "terminator"])
async def test_a_select_object_split_after_its_p1_passes(mode: str) -> None:
    """A T=0 host that splits SELECT P1=02 after P1 still reaches its applet's object."""
    card = enveloped(mode)
    guard = CardGuard(keep=0, policy=ApduPolicy(aids=frozenset({CCC_AID})))
    assert (await guard.transmit(card, select(CCC_AID))).hex() == "610d"
    command = bytes.fromhex("00A4020002DB00")
    answers = [
        (await guard.transmit(card, envelope(part))).hex() for part in (command[:3], command[3:])
    ]
    if mode == "terminator":
        answers.append((await guard.transmit(card, END)).hex())
    assert answers[-1] == "9000"
    assert card.executed == [command]
    assert card.selected() == [CCC_AID]


@pytest.mark.parametrize("mode", ENVELOPE_MODES)
@pytest.mark.parametrize("depth", [1, 2, 3])
async def test_a_select_by_path_inside_nested_envelopes_is_refused(mode: str, depth: int) -> None:
    card = enveloped(mode)
    guard = CardGuard(keep=0, policy=ALLOW_GSC_IS)
    answers = [
        (await guard.transmit(card, apdu)).hex()
        for apdu in delivered(bytes.fromhex("00A4080004DB000101"), depth)
    ]
    assert answers[0] == "6a82"
    assert not any(instruction(executed) == INS_SELECT for executed in card.executed)


# -- a card with a file system --------------------------------------------------------------


@dataclass(frozen=True)
class Application:
    """An application DF: its AID, its file identifier, and an EF in it."""

    aid: bytes
    fid: bytes
    ef: bytes = b"\x01\x01"


MF = b"\x3f\x00"
#: Two applications the allow lists below may allow, and three they never do; the last is the
#: default applet a Java Card selects on a new channel.
APPLICATIONS = (
    Application(PKI_AID, b"\x50\x01"),
    Application(RID_GSC_IS + b"\x01\x01", b"\x50\x02"),
    Application(CCC_AID, b"\xdb\x00"),
    Application(bytes.fromhex("A00000030800001000"), b"\x50\x10"),
    Application(GP_AID, b"\x50\x20"),
)
DEFAULT_APPLET = APPLICATIONS[-1]
#: The current DF of one channel: the MF, an application, or nothing yet (after reset).
Current = Application | bytes | None


@dataclass(eq=False)  # hashed by identity: the guard keeps what it learns per card
class FileSystemCard:
    """An ISO/IEC 7816-4 card whose applications are DFs under the MF, read leniently as vicc
    reads commands (any class; a command shorter than a header padded to one): SELECT by AID,
    file identifier, child or parent DF and path all reach them, an RFU P1 selects the default
    applet, MANAGE CHANNEL opens channels 1-19 with the default applet (from channel 0) or the
    origin's application, and ENVELOPE runs its data per ``mode`` (as
    :class:`tests.daemons.test_card_guard.EnvelopeCard`)."""

    mode: str = "each"
    channels: dict[int, Current] = field(default_factory=lambda: dict.fromkeys(range(4)))
    buffers: dict[int, bytes] = field(default_factory=dict)
    #: Every DF any channel had as current, in order.
    reached: list[Current] = field(default_factory=list)

    atr = b"\x3b\x00"

    def power_on(self) -> None:
        """Nothing to do."""

    async def cold_reset(self) -> None:
        self.channels = dict.fromkeys(range(4))

    async def transmit(self, apdu: bytes) -> bytes:
        return self._run(apdu, 0)

    def _run(self, apdu: bytes, depth: int) -> bytes:
        if 2 <= len(apdu) < 4:
            apdu = apdu.ljust(4, b"\x00")  # vicc's padding: 00 A4 is a SELECT of the MF
        try:
            command = CommandAPDU.from_bytes(apdu)
        except APDUFormatError:
            return b"\x67\x00"
        if command.ins == INS_ENVELOPE and depth < 5:
            return self._envelope(command.data, depth)
        channel = logical_channel(command.cla)
        if channel not in self.channels:
            return b"\x68\x81"
        if command.ins == INS_MANAGE_CHANNEL:
            return self._manage_channel(command, channel)
        if command.ins != INS_SELECT:
            return b"\x90\x00"
        found = self._select(command, self.channels[channel])
        if found is None:
            return b"\x6a\x82"
        self.channels[channel] = found
        self.reached.append(found)
        return b"\x90\x00"

    def _envelope(self, data: bytes, depth: int) -> bytes:
        held = self.buffers.pop(depth, b"")
        if not data:
            return self._run(held, depth + 1) if held else b"\x90\x00"
        if self.mode == "each":
            return self._run(data, depth + 1)
        held += data
        if self.mode == "length":
            try:
                CommandAPDU.from_bytes(held)
            except APDUFormatError:
                pass
            else:
                return self._run(held, depth + 1)
        self.buffers[depth] = held[:70000]
        return b"\x90\x00"

    def _manage_channel(self, command: CommandAPDU, channel: int) -> bytes:
        if command.p1 == 0x80:
            if channel:
                self.channels.pop(channel)
            return b"\x90\x00"
        free = [number for number in range(1, 20) if number not in self.channels]
        number = command.p2 if command.p2 in free else (free[0] if free else None)
        if number is None:
            return b"\x6a\x81"
        opened = DEFAULT_APPLET if channel == 0 else self.channels[channel]
        self.channels[number] = opened
        self.reached.append(opened)
        return bytes((number, 0x90, 0x00))

    @staticmethod
    def _select(command: CommandAPDU, current: Current) -> Current:
        data, p1 = command.data, command.p1
        by_fid = {application.fid: application for application in APPLICATIONS}
        in_mf = current is None or current == MF
        if p1 == SelectForm.DF_NAME:
            if not data:
                return MF
            matches = [a for a in APPLICATIONS if a.aid.startswith(data)]
            if not matches:
                return None
            return matches[0] if command.p2 & 0x03 == 0 else matches[-1]
        if p1 == SelectForm.FILE_IDENTIFIER:
            if data in (b"", MF):
                return MF
            return by_fid.get(data, current)  # a DF near the current one, else an EF
        if p1 == SelectForm.CHILD_DF:
            return by_fid.get(data) if in_mf else None
        if p1 == SelectForm.EF_UNDER_CURRENT_DF:
            return current
        if p1 == SelectForm.PARENT_DF:
            return MF
        if p1 in (SelectForm.PATH_FROM_MF, SelectForm.PATH_FROM_CURRENT_DF):
            if p1 == SelectForm.PATH_FROM_CURRENT_DF and not in_mf:
                return current
            return by_fid.get(data[:2], MF)
        return DEFAULT_APPLET  # RFU: the card's own meaning


def selecting_commands() -> st.SearchStrategy[bytes]:
    """SELECT in every form and MANAGE CHANNEL, in every class and length encoding, naming the
    file-system card's applications by AID (whole or cut), file identifier and path, with
    vicc's 3-byte Le and a byte too few."""
    names = st.sampled_from(
        [
            b"",
            MF,
            b"\x01\x01",
            *(a.aid for a in APPLICATIONS),
            *(a.aid[:5] for a in APPLICATIONS),
            *(a.fid for a in APPLICATIONS),
            *(a.fid + a.ef for a in APPLICATIONS),
            *(MF + a.fid for a in APPLICATIONS),
        ]
    )

    @st.composite
    def commands(draw: st.DrawFn) -> bytes:
        cla = draw(st.sampled_from(CLASSES))
        if draw(st.integers(0, 4)) == 0:
            p1 = draw(st.sampled_from([0x00, 0x00, 0x80, 0x01]))
            p2 = draw(st.sampled_from([0x00, 0x01, 0x02, 0x05]))
            raw = CommandAPDU(cla, INS_MANAGE_CHANNEL, p1, p2, le=draw(st.sampled_from([None, 1])))
        else:
            p1 = draw(
                st.sampled_from([0x04] * 3 + [0x00, 0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A])
            )
            p2 = draw(st.sampled_from([0x00, 0x00, 0x0C, 0x02, 0x04]))
            le = draw(st.none() | st.sampled_from([1, 256]))
            extended = draw(st.booleans())
            raw = CommandAPDU(cla, INS_SELECT, p1, p2, draw(names), le, extended=extended)
        encoded = raw.to_bytes()
        mangle = draw(st.sampled_from(["none"] * 6 + ["append", "drop"]))
        if mangle == "append":
            encoded += b"\x00"
        elif mangle == "drop":
            encoded = encoded[:-1]
        return encoded

    return commands()


def test_without_the_allow_list_the_file_system_card_reaches_every_application() -> None:
    """The model card is one the allow list must hold against: a SELECT by file identifier,
    path or child DF, and a new channel, each reach an application no AID named."""
    card = FileSystemCard()
    guard = CardGuard(keep=0)

    async def run() -> list[str]:
        commands = ["00A4000002DB00", "01A40800025010", "02A4030000", "03A40100025020", "00700000"]
        return [(await guard.transmit(card, bytes.fromhex(c))).hex() for c in commands]

    assert asyncio.run(run()) == ["9000"] * 4 + ["049000"]
    assert card.reached == [APPLICATIONS[2], APPLICATIONS[3], MF, APPLICATIONS[4], DEFAULT_APPLET]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    aids=st.sets(st.sampled_from([RID_GSC_IS, PKI_AID, RID_DOD, CCC_AID]), min_size=1, max_size=2),
    listed=st.booleans(),
    keep=st.sampled_from([0, 1]),
    mode=st.sampled_from(ENVELOPE_MODES),
    steps=st.lists(envelope_steps(selecting_commands()), min_size=1, max_size=10),
)
def test_on_a_file_system_card_no_application_outside_the_allow_list_is_reached(
    aids: set[bytes], listed: bool, keep: int, mode: str, steps: list[list[bytes]]
) -> None:
    instructions = frozenset({0xA4, 0x70, 0xC2, 0xC0}) if listed else frozenset()
    card = FileSystemCard(mode)
    guard = CardGuard(keep=keep, policy=ApduPolicy(instructions, frozenset(aids)))

    async def run() -> None:
        for step in steps:
            for apdu in step:
                await guard.transmit(card, apdu)
                for current in card.reached:
                    assert isinstance(current, Application), (apdu.hex(), current)
                    assert any(current.aid.startswith(a) for a in aids), (apdu.hex(), current)

    asyncio.run(run())
