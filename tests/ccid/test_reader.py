"""The sans-IO reader answers every PC_to_RDR command as CCID rev 1.1 and libccid expect:
the right response type and bStatus/bError, busy, abort, chaining, time extension, cards
coming and going mid-APDU. Time is driven explicitly; what the card side must do is what the
reader's inputs return."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccid import (
    CCIDLocalProtocolError,
    CCIDReader,
    CCIDRemoteProtocolError,
    ReaderConfiguration,
    SlotState,
)
from ccid.card import TEST_ATR
from ccid.codec import decode_interrupt, decode_response, encode
from ccid.constants import MAX_APDU_SIZE, ChainParameter, CommandStatus, ICCStatus, SlotError
from ccid.events import APDUCancelled, APDURequested, CCIDReaderEvent, ICCReset
from ccid.messages import (
    Command,
    PC_to_RDR_Abort,
    PC_to_RDR_Escape,
    PC_to_RDR_GetParameters,
    PC_to_RDR_GetSlotStatus,
    PC_to_RDR_IccClock,
    PC_to_RDR_IccPowerOff,
    PC_to_RDR_IccPowerOn,
    PC_to_RDR_Mechanical,
    PC_to_RDR_ResetParameters,
    PC_to_RDR_Secure,
    PC_to_RDR_SetDataRateAndClockFrequency,
    PC_to_RDR_SetParameters,
    PC_to_RDR_T0APDU,
    PC_to_RDR_XfrBlock,
    RDR_to_PC_DataBlock,
    RDR_to_PC_DataRateAndClockFrequency,
    RDR_to_PC_Escape,
    RDR_to_PC_NotifySlotChange,
    RDR_to_PC_Parameters,
    RDR_to_PC_SlotStatus,
    Response,
    UnknownCommand,
)

from .card_side import RecordingReader

ACTIVE = ICCStatus.PRESENT_ACTIVE
INACTIVE = ICCStatus.PRESENT_INACTIVE
ABSENT = ICCStatus.NOT_PRESENT
FAILED = CommandStatus.FAILED
OK_STATUS = CommandStatus.PROCESSED
SELECT = bytes.fromhex("00A4040000")
OK = b"\x90\x00"
T1_PARAMETERS = bytes.fromhex("11 10 00 45 00 FE 00")
RATE = bytes.fromhex("A00F0000 002A0000")  # 4000 kHz, 10752 bps: the values in use


class Host:
    """libccid's side of the bulk and interrupt pipes, with a clock the test drives."""

    def __init__(self, config: ReaderConfiguration | None = None) -> None:
        self.reader = RecordingReader(config or ReaderConfiguration(serial="TEST"))
        self.now = 0.0

    def send(self, *commands: Command) -> None:
        self.reader.receive_bulk_out(b"".join(encode(c) for c in commands), self.now)

    def responses(self) -> list[Response]:
        out = []
        while data := self.reader.read_bulk_in(1 << 20):
            out.append(decode_response(data))
        return out

    def ask(self, command: Command) -> Response:
        self.send(command)
        (response,) = self.responses()
        return response

    def events(self) -> list[CCIDReaderEvent]:
        """What the inputs since the last call asked of the card side, in order."""
        return self.reader.take_events()

    def notification(self) -> bytes | None:
        return self.reader.read_interrupt_in()

    def tick(self, seconds: float) -> None:
        self.now += seconds
        self.reader.handle_timer(self.now)

    def xfr(self, bSeq: int, apdu: bytes = SELECT) -> int:
        """Send an XfrBlock; return the request the card must answer."""
        self.send(PC_to_RDR_XfrBlock(0, bSeq, apdu))
        (event,) = self.events()
        assert event == APDURequested(event.request, apdu)  # type: ignore[union-attr]
        assert isinstance(event, APDURequested)
        return event.request


def with_card(config: ReaderConfiguration | None = None) -> Host:
    host = Host(config)
    host.reader.insert_card(TEST_ATR)
    host.notification()
    return host


def powered(config: ReaderConfiguration | None = None) -> Host:
    host = with_card(config)
    host.ask(PC_to_RDR_IccPowerOn(0, 0))
    host.events()
    return host


def test_the_old_names_still_work_for_one_release_with_a_warning() -> None:
    import ccid

    with pytest.warns(DeprecationWarning, match="ccid.CCIDReader"):
        assert ccid.Reader is CCIDReader
    with pytest.warns(DeprecationWarning, match="ccid.ICC"):
        assert ccid.Card is ccid.ICC


# -- slot state and NotifySlotChange ----------------------------------------------------------


def test_empty_slot_reports_no_icc_without_failing() -> None:
    host = Host()
    host.send(PC_to_RDR_GetSlotStatus(0, 5))
    assert host.reader.read_bulk_in(64) == bytes.fromhex("81 00000000 00 05 02 00 00")


def test_inserted_card_is_notified_once_and_present_inactive() -> None:
    host = Host()
    assert host.notification() is None
    host.reader.insert_card(TEST_ATR)
    assert host.notification() == bytes.fromhex("50 03")
    assert host.notification() is None
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 1)) == RDR_to_PC_SlotStatus(0, 1, INACTIVE)
    assert host.reader.slot_state is SlotState.PRESENT_INACTIVE


def test_removing_no_card_is_no_change_and_not_notified() -> None:
    host = Host()
    host.reader.remove_card()
    assert host.notification() is None


def test_changes_before_the_host_reads_are_merged_into_one_notification() -> None:
    host = Host()
    host.reader.insert_card(TEST_ATR)
    host.reader.remove_card()
    assert host.notification() == bytes.fromhex("50 02")
    assert host.notification() is None


def test_a_replaced_card_is_a_change_and_comes_back_inactive() -> None:
    host = powered()
    host.reader.insert_card(bytes.fromhex("3B00"))
    assert host.notification() == bytes.fromhex("50 03")
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 2)).bStatus == INACTIVE
    assert host.reader.atr == bytes.fromhex("3B00")


def test_bad_atr_is_refused_and_changes_nothing() -> None:
    host = Host()
    with pytest.raises(CCIDLocalProtocolError, match=r"exceeds 33: ATR\.length=0x22"):
        host.reader.insert_card(b"\x3b" + bytes(33))
    assert host.reader.slot_state is SlotState.ABSENT
    assert host.notification() is None


# -- IccPowerOn / IccPowerOff ------------------------------------------------------------------


def test_power_on_answers_the_atr_and_activates_the_card() -> None:
    host = with_card()
    host.send(PC_to_RDR_IccPowerOn(0, 7))
    assert host.reader.read_bulk_in(43) == bytes.fromhex("80 07000000 00 07 00 00 00") + TEST_ATR
    assert host.events() == [ICCReset(active=True)]
    assert host.reader.slot_state is SlotState.PRESENT_ACTIVE


def test_power_on_of_an_active_card_is_a_warm_reset() -> None:
    host = powered()
    response = host.ask(PC_to_RDR_IccPowerOn(0, 3))
    assert response == RDR_to_PC_DataBlock(0, 3, ACTIVE, abData=TEST_ATR)
    assert host.events() == [ICCReset(active=True)]


def test_power_on_without_a_card_fails_mute_and_carries_no_atr() -> None:
    host = Host()
    host.send(PC_to_RDR_IccPowerOn(0, 1))
    assert host.reader.read_bulk_in(43) == bytes.fromhex("80 00000000 00 01 42 FE 00")
    assert host.events() == []


def test_power_on_with_an_unknown_voltage_fails_naming_bpowerselect() -> None:
    host = with_card()
    response = host.ask(PC_to_RDR_IccPowerOn(0, 1, 4))
    assert response == RDR_to_PC_DataBlock(0, 1, INACTIVE, FAILED, SlotError.BAD_OFFSET_7)


def test_power_off_deactivates_the_card() -> None:
    host = powered()
    host.send(PC_to_RDR_IccPowerOff(0, 9))
    assert host.reader.read_bulk_in(10) == bytes.fromhex("81 00000000 00 09 01 00 00")
    assert host.events() == [ICCReset(active=False)]


def test_power_off_of_an_empty_slot_succeeds_reporting_no_icc() -> None:
    host = Host()
    assert host.ask(PC_to_RDR_IccPowerOff(0, 1)) == RDR_to_PC_SlotStatus(0, 1, ABSENT)


# -- XfrBlock --------------------------------------------------------------------------------


def test_xfr_block_goes_to_the_card_and_its_answer_comes_back_with_the_same_bseq() -> None:
    host = powered()
    request = host.xfr(0x42)
    assert host.reader.busy
    assert host.responses() == []
    host.reader.apdu_response(request, b"\x6f\x00" + OK)
    assert host.reader.read_bulk_in(65556) == bytes.fromhex("80 04000000 00 42 00 00 00 6F00 9000")
    assert not host.reader.busy


@pytest.mark.parametrize(("prepare", "status"), [(Host, ABSENT), (with_card, INACTIVE)])
def test_xfr_block_without_an_active_card_fails_mute(
    prepare: type[Host], status: ICCStatus
) -> None:
    host = prepare()
    assert host.ask(PC_to_RDR_XfrBlock(0, 1, SELECT)) == RDR_to_PC_DataBlock(
        0, 1, status, FAILED, SlotError.ICC_MUTE
    )
    assert host.events() == []


def test_a_card_that_gives_no_answer_is_reported_mute() -> None:
    host = powered()
    request = host.xfr(3)
    host.reader.apdu_failed(request)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 3, ACTIVE, FAILED, SlotError.ICC_MUTE)]


def test_a_64_kib_extended_apdu_and_its_65538_byte_response_pass_whole() -> None:
    host = powered()
    apdu = b"\x00\x2a\x80\x86\x00\xff\xff" + bytes(65535) + b"\x00\x00"
    assert len(apdu) == MAX_APDU_SIZE
    request = host.xfr(1, apdu)
    response = bytes(range(256)) * 256 + OK
    host.reader.apdu_response(request, response)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=response)]


def test_a_response_longer_than_any_apdu_fails_with_overrun() -> None:
    host = powered()
    request = host.xfr(1)
    host.reader.apdu_response(request, bytes(MAX_APDU_SIZE + 1))
    assert host.responses() == [RDR_to_PC_DataBlock(0, 1, ACTIVE, FAILED, SlotError.XFR_OVERRUN)]


# -- bSlot, busy, dwLength --------------------------------------------------------------------

ALL_COMMANDS: list[tuple[Command, type]] = [
    (PC_to_RDR_IccPowerOn(1, 1), RDR_to_PC_DataBlock),
    (PC_to_RDR_IccPowerOff(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_GetSlotStatus(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_XfrBlock(1, 1, SELECT), RDR_to_PC_DataBlock),
    (PC_to_RDR_GetParameters(1, 1), RDR_to_PC_Parameters),
    (PC_to_RDR_ResetParameters(1, 1), RDR_to_PC_Parameters),
    (PC_to_RDR_SetParameters(1, 1, 1, T1_PARAMETERS), RDR_to_PC_Parameters),
    (PC_to_RDR_Escape(1, 1, b"\x6a"), RDR_to_PC_Escape),
    (PC_to_RDR_IccClock(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_T0APDU(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_Secure(1, 1, b"\x00"), RDR_to_PC_DataBlock),
    (PC_to_RDR_Mechanical(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_Abort(1, 1), RDR_to_PC_SlotStatus),
    (PC_to_RDR_SetDataRateAndClockFrequency(1, 1, RATE), RDR_to_PC_DataRateAndClockFrequency),
    (UnknownCommand(0x99, 1, 1), RDR_to_PC_SlotStatus),
]


def _to_slot(command: Command, bSlot: int, bSeq: int) -> Command:
    return replace(command, bSlot=bSlot, bSeq=bSeq)


@pytest.mark.parametrize(("command", "kind"), ALL_COMMANDS, ids=lambda v: type(v).__name__)
def test_a_slot_that_does_not_exist_fails_every_command_with_berror_5(
    command: Command, kind: type
) -> None:
    host = powered()
    response = host.ask(_to_slot(command, 3, 0x77))
    assert type(response) is kind
    assert (response.bSlot, response.bSeq) == (3, 0x77)
    assert (response.bmCommandStatus, response.bError) == (FAILED, SlotError.BAD_SLOT)
    assert host.events() == []


@pytest.mark.parametrize(
    ("command", "kind"),
    [c for c in ALL_COMMANDS if not isinstance(c[0], PC_to_RDR_Abort)],
    ids=lambda v: type(v).__name__,
)
def test_every_command_while_the_card_works_is_answered_slot_busy(
    command: Command, kind: type
) -> None:
    host = powered()
    request = host.xfr(1)
    response = host.ask(_to_slot(command, 0, 2))
    assert type(response) is kind
    assert (response.bSeq, response.bmCommandStatus, response.bError) == (
        2,
        FAILED,
        SlotError.CMD_SLOT_BUSY,
    )
    # The busy answer does not disturb the APDU in progress.
    host.reader.apdu_response(request, OK)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 1, ACTIVE, abData=OK)]


@pytest.mark.parametrize(
    "command",
    [
        PC_to_RDR_IccPowerOn(0, 1, 0, b"x"),
        PC_to_RDR_IccPowerOff(0, 1, b"x"),
        PC_to_RDR_GetSlotStatus(0, 1, b"x"),
        PC_to_RDR_GetParameters(0, 1, b"x"),
        PC_to_RDR_ResetParameters(0, 1, b"x"),
        PC_to_RDR_SetParameters(0, 1, 1, b"\x11" * 5),
        PC_to_RDR_IccClock(0, 1, 0, b"x"),
        PC_to_RDR_Abort(0, 1, b"x"),
        PC_to_RDR_SetDataRateAndClockFrequency(0, 1, b"\x00" * 4),
    ],
    ids=lambda v: type(v).__name__,
)
def test_a_wrong_dwlength_fails_with_berror_1(command: Command) -> None:
    host = powered()
    response = host.ask(command)
    assert (response.bmCommandStatus, response.bError) == (FAILED, SlotError.BAD_DWLENGTH)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (PC_to_RDR_T0APDU(0, 4), RDR_to_PC_SlotStatus(0, 4, ACTIVE, FAILED, 0)),
        (PC_to_RDR_Secure(0, 4, b"\x00"), RDR_to_PC_DataBlock(0, 4, ACTIVE, FAILED, 0)),
        (PC_to_RDR_Mechanical(0, 4, 1), RDR_to_PC_SlotStatus(0, 4, ACTIVE, FAILED, 0)),
        (UnknownCommand(0x99, 0, 4), RDR_to_PC_SlotStatus(0, 4, ACTIVE, FAILED, 0)),
    ],
    ids=lambda v: type(v).__name__,
)
def test_unsupported_commands_fail_with_command_not_supported_in_their_response_type(
    command: Command, expected: Response
) -> None:
    assert powered().ask(command) == expected


# -- Parameters ------------------------------------------------------------------------------


def test_get_parameters_reports_the_atr_protocol() -> None:
    assert with_card().ask(PC_to_RDR_GetParameters(0, 2)) == RDR_to_PC_Parameters(
        0, 2, INACTIVE, bProtocolNum=1, abProtocolDataStructure=T1_PARAMETERS
    )


def test_set_parameters_are_kept_until_reset_parameters() -> None:
    host = powered()
    t0 = bytes.fromhex("96 00 00 0A 00")
    assert host.ask(PC_to_RDR_SetParameters(0, 1, 0, t0)) == RDR_to_PC_Parameters(
        0, 1, ACTIVE, bProtocolNum=0, abProtocolDataStructure=t0
    )
    assert host.ask(PC_to_RDR_GetParameters(0, 2)).abProtocolDataStructure == t0  # type: ignore[union-attr]
    reset = host.ask(PC_to_RDR_ResetParameters(0, 3))
    assert reset == RDR_to_PC_Parameters(0, 3, ACTIVE, OK_STATUS, 0, 1, T1_PARAMETERS)


def test_set_parameters_with_an_unknown_protocol_fails_naming_bprotocolnum() -> None:
    response = powered().ask(PC_to_RDR_SetParameters(0, 1, 2, b""))
    assert response == RDR_to_PC_Parameters(0, 1, ACTIVE, FAILED, 7, 1, T1_PARAMETERS)


@pytest.mark.parametrize(
    "command",
    [
        PC_to_RDR_GetParameters(0, 1),
        PC_to_RDR_ResetParameters(0, 1),
        PC_to_RDR_SetParameters(0, 1, 1, T1_PARAMETERS),
    ],
)
def test_parameters_without_a_card_fail_mute(command: Command) -> None:
    assert Host().ask(command) == RDR_to_PC_Parameters(0, 1, ABSENT, FAILED, SlotError.ICC_MUTE)


# -- Escape, IccClock, SetDataRateAndClockFrequency ------------------------------------------


def test_gemalto_get_firmware_features_fails_the_way_libccid_accepts() -> None:
    host = Host()
    host.send(PC_to_RDR_Escape(0, 1, b"\x6a"))
    assert host.reader.read_bulk_in(64) == bytes.fromhex("83 00000000 00 01 42 00 00")


def test_gemalto_firmware_version_escape_returns_the_firmware_id() -> None:
    response = Host(ReaderConfiguration(firmware_id="fw 2")).ask(PC_to_RDR_Escape(0, 1, b"\x02"))
    assert response == RDR_to_PC_Escape(0, 1, ABSENT, abData=b"fw 2")


def test_gemalto_escapes_are_not_answered_for_another_vendor() -> None:
    host = Host(ReaderConfiguration(idVendor=0x1209, idProduct=0x0001))
    assert host.ask(PC_to_RDR_Escape(0, 1, b"\x02")) == RDR_to_PC_Escape(0, 1, ABSENT, FAILED, 0)


def test_icc_clock_restart_succeeds_and_stop_is_refused() -> None:
    host = powered()
    assert host.ask(PC_to_RDR_IccClock(0, 1, 0)) == RDR_to_PC_SlotStatus(0, 1, ACTIVE)
    assert host.ask(PC_to_RDR_IccClock(0, 2, 1)) == RDR_to_PC_SlotStatus(0, 2, ACTIVE, FAILED, 7)
    assert Host().ask(PC_to_RDR_IccClock(0, 3, 0)).bError == SlotError.ICC_MUTE


def test_set_data_rate_accepts_the_values_in_use_and_reports_them() -> None:
    host = powered()
    host.send(PC_to_RDR_SetDataRateAndClockFrequency(0, 1, RATE))
    assert host.reader.read_bulk_in(64) == bytes.fromhex("84 08000000 00 01 00 00 00") + RATE


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ("A10F0000 002A0000", SlotError.BAD_CLOCK_FREQUENCY),
        ("A00F0000 80250000", SlotError.BAD_DATA_RATE),
    ],
)
def test_set_data_rate_refuses_other_values_naming_the_field(data: str, error: SlotError) -> None:
    response = powered().ask(PC_to_RDR_SetDataRateAndClockFrequency(0, 1, bytes.fromhex(data)))
    assert response == RDR_to_PC_DataRateAndClockFrequency(0, 1, ACTIVE, FAILED, error, 4000, 10752)


# -- time extension --------------------------------------------------------------------------


def test_time_extensions_go_out_while_the_card_is_slow_and_stop_with_its_answer() -> None:
    host = powered()
    assert host.reader.get_timer() is None
    request = host.xfr(9)
    assert host.reader.get_timer() == 1.0
    host.tick(0.5)
    assert host.responses() == []
    host.tick(0.5)
    assert host.reader.read_bulk_in(65556) == bytes.fromhex("80 00000000 00 09 80 01 00")
    assert host.reader.get_timer() == 2.0
    host.tick(1.0)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 9, ACTIVE, CommandStatus.TIME_EXTENSION, 1)]
    host.reader.apdu_response(request, OK)
    assert host.reader.get_timer() is None
    host.tick(5.0)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 9, ACTIVE, abData=OK)]


def test_no_time_extension_piles_up_while_the_host_is_not_reading() -> None:
    host = powered()
    host.xfr(1)
    for _ in range(10):
        host.tick(1.0)
    assert len(host.responses()) == 1


def test_time_extensions_come_well_inside_libccids_three_second_read_timeout() -> None:
    host = powered(ReaderConfiguration(time_extension_interval=2.5))
    host.xfr(1)
    assert host.reader.get_timer() == 2.5
    with pytest.raises(ValueError, match="read timeout"):
        ReaderConfiguration(time_extension_interval=3.5)


def test_commands_answered_at_once_never_start_the_timer() -> None:
    host = with_card()
    for command in (
        PC_to_RDR_IccPowerOn(0, 1),
        PC_to_RDR_GetSlotStatus(0, 2),
        PC_to_RDR_SetParameters(0, 3, 1, T1_PARAMETERS),
        PC_to_RDR_Escape(0, 4, b"\x6a"),
    ):
        host.send(command)
        assert host.reader.get_timer() is None


# -- removal and replacement mid-APDU -------------------------------------------------------


def test_card_removed_mid_apdu_answers_the_xfr_block_at_once_and_cancels_the_card() -> None:
    host = powered()
    request = host.xfr(0x10)
    host.reader.remove_card()
    assert host.events() == [APDUCancelled(request)]
    assert host.reader.read_bulk_in(65556) == bytes.fromhex("80 00000000 00 10 42 FE 00")
    assert host.notification() == bytes.fromhex("50 02")
    assert host.reader.get_timer() is None
    host.reader.apdu_response(request, OK)  # too late: ignored
    assert host.responses() == []
    assert not host.reader.busy


def test_card_replaced_mid_apdu_answers_the_xfr_block_too() -> None:
    host = powered()
    request = host.xfr(0x11)
    host.reader.insert_card(TEST_ATR)
    assert host.events() == [APDUCancelled(request)]
    assert host.responses() == [RDR_to_PC_DataBlock(0, 0x11, ABSENT, FAILED, SlotError.ICC_MUTE)]
    assert host.notification() == bytes.fromhex("50 03")


def test_a_late_answer_is_never_taken_for_the_next_apdus() -> None:
    host = powered()
    first = host.xfr(1)
    host.reader.remove_card()
    host.reader.insert_card(TEST_ATR)
    host.ask(PC_to_RDR_IccPowerOn(0, 2))
    host.events()
    second = host.xfr(3)
    host.reader.apdu_response(first, b"stale" + OK)
    assert host.responses() == []
    host.reader.apdu_response(second, OK)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 3, ACTIVE, abData=OK)]


def test_responses_the_host_never_read_are_dropped_when_it_sends_a_new_command() -> None:
    # libccid does not check bSeq on XfrBlock answers: a leftover would answer the next APDU.
    host = powered()
    host.send(PC_to_RDR_GetSlotStatus(0, 1))
    host.reader.read_bulk_in(4)  # partly read, then given up
    host.send(PC_to_RDR_GetSlotStatus(0, 2), PC_to_RDR_GetSlotStatus(0, 3))
    assert host.responses() == [RDR_to_PC_SlotStatus(0, 3, ACTIVE)]


# -- chaining (wLevelParameter / bChainParameter) ------------------------------------------

SMALL = ReaderConfiguration(max_message_length=271)  # 261 data bytes per message


def test_a_chained_command_is_collected_and_sent_to_the_card_whole() -> None:
    host = powered(SMALL)
    apdu = bytes(range(256)) * 2 + b"\x00"
    blocks = [apdu[:261], apdu[261 : 513 - 0], apdu[513:]]
    for bSeq, (block, level) in enumerate(zip(blocks, (1, 3, 2), strict=True)):
        host.send(PC_to_RDR_XfrBlock(0, bSeq, block, 0, level))
        if level != 2:
            assert host.responses() == [
                RDR_to_PC_DataBlock(0, bSeq, ACTIVE, bChainParameter=ChainParameter.NEXT_COMMAND)
            ]
            assert host.events() == []
    (event,) = host.events()
    assert isinstance(event, APDURequested)
    assert event.apdu == apdu


def test_a_long_response_is_chained_and_the_host_asks_for_each_block() -> None:
    host = powered(SMALL)
    request = host.xfr(1)
    response = bytes(600)
    host.reader.apdu_response(request, response)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 1, ACTIVE, OK_STATUS, 0, 1, response[:261])]
    host.send(PC_to_RDR_XfrBlock(0, 2, b"", 0, 0x10))
    assert host.responses() == [
        RDR_to_PC_DataBlock(0, 2, ACTIVE, OK_STATUS, 0, 3, response[261:522])
    ]
    host.send(PC_to_RDR_XfrBlock(0, 3, b"", 0, 0x10))
    assert host.responses() == [RDR_to_PC_DataBlock(0, 3, ACTIVE, OK_STATUS, 0, 2, response[522:])]
    assert host.ask(PC_to_RDR_XfrBlock(0, 4, b"", 0, 0x10)).bError == SlotError.BAD_LEVELPARAMETER


def test_a_new_apdu_abandons_the_rest_of_a_chained_response() -> None:
    host = powered(SMALL)
    host.reader.apdu_response(host.xfr(1), bytes(600))
    host.responses()
    host.xfr(2)
    assert host.ask(PC_to_RDR_XfrBlock(0, 3, b"", 0, 0x10)).bError == SlotError.CMD_SLOT_BUSY


@pytest.mark.parametrize(
    ("level", "error"),
    [(2, SlotError.BAD_LEVELPARAMETER), (3, SlotError.BAD_LEVELPARAMETER), (0x10, 8), (0x20, 8)],
)
def test_chaining_out_of_order_fails_naming_wlevelparameter(level: int, error: int) -> None:
    host = powered(SMALL)
    response = host.ask(PC_to_RDR_XfrBlock(0, 1, b"\x00", 0, level))
    assert response == RDR_to_PC_DataBlock(0, 1, ACTIVE, FAILED, error)
    assert host.events() == []


def test_a_chain_longer_than_any_apdu_fails_with_overrun_and_is_forgotten() -> None:
    host = powered()
    host.ask(PC_to_RDR_XfrBlock(0, 1, bytes(65544), 0, 1))
    response = host.ask(PC_to_RDR_XfrBlock(0, 2, b"\x00", 0, 2))
    assert response == RDR_to_PC_DataBlock(0, 2, ACTIVE, FAILED, SlotError.XFR_OVERRUN)
    assert host.ask(PC_to_RDR_XfrBlock(0, 3, b"\x00", 0, 2)).bError == SlotError.BAD_LEVELPARAMETER


def test_power_off_forgets_a_chain_in_progress() -> None:
    host = powered(SMALL)
    host.ask(PC_to_RDR_XfrBlock(0, 1, b"\x00" * 10, 0, 1))
    host.ask(PC_to_RDR_IccPowerOff(0, 2))
    host.ask(PC_to_RDR_IccPowerOn(0, 3))
    assert host.ask(PC_to_RDR_XfrBlock(0, 4, b"\x00", 0, 2)).bError == SlotError.BAD_LEVELPARAMETER


# -- abort procedure -------------------------------------------------------------------------


def test_abort_request_then_command_ends_the_apdu_and_answers_the_abort() -> None:
    host = powered()
    request = host.xfr(5)
    assert host.reader.abort_request(0, 6) == [APDUCancelled(request)]
    host.events()
    assert host.responses() == [RDR_to_PC_DataBlock(0, 5, ACTIVE, FAILED, SlotError.CMD_ABORTED)]
    # Until the bulk half arrives, other commands find the slot busy.
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 7)).bError == SlotError.CMD_SLOT_BUSY
    assert host.ask(PC_to_RDR_Abort(0, 6)) == RDR_to_PC_SlotStatus(0, 6, ACTIVE)
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 8)) == RDR_to_PC_SlotStatus(0, 8, ACTIVE)
    host.reader.apdu_response(request, OK)
    assert host.responses() == []


def test_abort_command_first_is_answered_when_the_class_request_follows() -> None:
    host = powered()
    request = host.xfr(5)
    host.send(PC_to_RDR_Abort(0, 6))
    assert host.events() == [APDUCancelled(request)]
    assert host.responses() == [RDR_to_PC_DataBlock(0, 5, ACTIVE, FAILED, SlotError.CMD_ABORTED)]
    assert host.reader.abort_request(0, 6) == []
    assert host.responses() == [RDR_to_PC_SlotStatus(0, 6, ACTIVE)]
    assert not host.reader.busy


@pytest.mark.parametrize("request_first", [True, False])
def test_abort_halves_sent_back_to_back_get_both_answers_in_order(request_first: bool) -> None:
    host = powered()
    host.xfr(5)
    if request_first:
        host.reader.abort_request(0, 6)
        host.send(PC_to_RDR_Abort(0, 6))
    else:
        host.send(PC_to_RDR_Abort(0, 6))
        host.reader.abort_request(0, 6)
    assert host.responses() == [
        RDR_to_PC_DataBlock(0, 5, ACTIVE, FAILED, SlotError.CMD_ABORTED),
        RDR_to_PC_SlotStatus(0, 6, ACTIVE),
    ]


def test_repeated_aborts_the_host_never_reads_do_not_pile_up() -> None:
    host = powered()
    for bSeq in range(50):
        host.reader.abort_request(0, bSeq)
        host.send(PC_to_RDR_Abort(0, bSeq))
    assert host.reader.queued_responses == 1


def test_abort_with_nothing_in_progress_still_completes() -> None:
    host = powered()
    host.reader.abort_request(0, 1)
    assert host.ask(PC_to_RDR_Abort(0, 1)) == RDR_to_PC_SlotStatus(0, 1, ACTIVE)


def test_abort_halves_with_different_bseq_do_not_match() -> None:
    host = powered()
    host.reader.abort_request(0, 1)
    assert host.ask(PC_to_RDR_Abort(0, 2)).bError == SlotError.BAD_SEQ
    assert host.ask(PC_to_RDR_Abort(0, 1)) == RDR_to_PC_SlotStatus(0, 1, ACTIVE)
    host.send(PC_to_RDR_Abort(0, 3))
    assert host.reader.abort_request(0, 4) == []
    assert host.responses() == [RDR_to_PC_SlotStatus(0, 3, ACTIVE, FAILED, SlotError.BAD_SEQ)]
    assert host.ask(PC_to_RDR_Abort(0, 4)) == RDR_to_PC_SlotStatus(0, 4, ACTIVE)


def test_abort_request_for_a_slot_that_does_not_exist_is_refused_naming_bslot() -> None:
    host = powered()
    request = host.xfr(5)
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        host.reader.abort_request(1, 5)
    assert (caught.value.field, caught.value.value) == ("bSlot", 1)
    # Nothing was aborted: the APDU is still with the card.
    host.reader.apdu_response(request, OK)
    assert host.responses() == [RDR_to_PC_DataBlock(0, 5, ACTIVE, abData=OK)]


# -- USB reset ----------------------------------------------------------------------------------


def test_usb_reset_drops_everything_in_flight_and_powers_the_card_down() -> None:
    host = powered()
    request = host.xfr(1)
    host.reader.insert_card(TEST_ATR)  # arms a notification
    host.reader.remove_card()
    host.reader.insert_card(TEST_ATR)
    host.ask(PC_to_RDR_IccPowerOn(0, 2))
    host.events()
    request = host.xfr(3)
    host.reader.receive_bulk_out(encode(PC_to_RDR_GetSlotStatus(0, 4))[:5], host.now)
    host.reader.reset()
    assert host.events() == [APDUCancelled(request), ICCReset(active=False)]
    assert host.responses() == []
    assert host.notification() is None
    assert host.reader.slot_state is SlotState.PRESENT_INACTIVE
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 5)) == RDR_to_PC_SlotStatus(0, 5, INACTIVE)


# -- bulk-OUT framing and bulk-IN pieces ------------------------------------------------------


def test_commands_split_into_64_byte_transfers_are_reassembled() -> None:
    host = powered()
    wire = encode(PC_to_RDR_XfrBlock(0, 1, bytes(300)))
    for start in range(0, len(wire), 64):
        host.reader.receive_bulk_out(wire[start : start + 64], host.now)
    (event,) = host.events()
    assert isinstance(event, APDURequested)
    assert event.apdu == bytes(300)


def test_an_oversized_message_raises_after_answering_what_came_before_it() -> None:
    host = powered()
    bad = bytes.fromhex("6F 13000100 00 02 000000")  # dwLength 65555
    with pytest.raises(CCIDRemoteProtocolError) as caught:
        host.reader.receive_bulk_out(encode(PC_to_RDR_GetSlotStatus(0, 1)) + bad, host.now)
    assert caught.value.field == "dwLength"
    assert host.responses() == [RDR_to_PC_SlotStatus(0, 1, ACTIVE)]
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 3)) == RDR_to_PC_SlotStatus(0, 3, ACTIVE)


def test_commands_before_an_oversized_message_still_reach_the_card_and_the_error_is_held() -> None:
    host = powered()
    bad = bytes.fromhex("6F 13000100 00 02 000000")  # dwLength 65555
    (event,) = host.reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 1, SELECT)) + bad, 0.0)
    assert isinstance(event, APDURequested)
    assert event.apdu == SELECT
    error = host.reader.error
    assert error is not None
    assert (error.field, error.value) == ("dwLength", 65555)
    host.reader.receive_bulk_out(b"", 0.0)
    assert host.reader.error is None


def test_each_input_returns_what_it_asks_of_the_card_side() -> None:
    reader = CCIDReader(ReaderConfiguration(serial="TEST"))
    assert reader.insert_card(TEST_ATR) == []
    assert reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 0)), 0.0) == [
        ICCReset(active=True)
    ]
    (requested,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 1, SELECT)), 0.0)
    assert isinstance(requested, APDURequested)
    assert reader.handle_timer(5.0) == []
    assert reader.apdu_response(requested.request, OK) == []
    (second,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 2, SELECT)), 0.0)
    assert isinstance(second, APDURequested)
    assert reader.insert_card(TEST_ATR) == [APDUCancelled(second.request)]  # a new card
    assert reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 3)), 0.0) == [
        ICCReset(active=True)
    ]
    (third,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 4, SELECT)), 0.0)
    assert isinstance(third, APDURequested)
    assert reader.abort_request(0, 5) == [APDUCancelled(third.request)]
    assert reader.receive_bulk_out(encode(PC_to_RDR_Abort(0, 5)), 0.0) == []
    (fourth,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 6, SELECT)), 0.0)
    assert isinstance(fourth, APDURequested)
    assert reader.apdu_failed(fourth.request) == []
    (fifth,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 7, SELECT)), 0.0)
    assert isinstance(fifth, APDURequested)
    assert reader.reset() == [APDUCancelled(fifth.request), ICCReset(active=False)]
    assert reader.receive_bulk_out(encode(PC_to_RDR_IccPowerOn(0, 8)), 0.0) == [
        ICCReset(active=True)
    ]
    (sixth,) = reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 9, SELECT)), 0.0)
    assert isinstance(sixth, APDURequested)
    assert reader.remove_card() == [APDUCancelled(sixth.request)]
    assert reader.remove_card() == []


def test_bulk_in_reads_get_at_most_what_they_ask_for() -> None:
    host = powered()
    host.reader.apdu_response(host.xfr(1), bytes(100) + OK)
    pieces = [host.reader.read_bulk_in(64), host.reader.read_bulk_in(64)]
    assert [len(p) for p in pieces] == [64, 48]
    assert decode_response(b"".join(pieces)) == RDR_to_PC_DataBlock(
        0, 1, ACTIVE, abData=bytes(100) + OK
    )
    assert host.reader.read_bulk_in(64) == b""


def test_discarding_a_partial_command_resyncs_bulk_out() -> None:
    host = powered()
    host.reader.receive_bulk_out(encode(PC_to_RDR_XfrBlock(0, 1, bytes(100)))[:50], host.now)
    host.reader.discard_partial_command()
    assert host.ask(PC_to_RDR_GetSlotStatus(0, 2)) == RDR_to_PC_SlotStatus(0, 2, ACTIVE)


# -- hostile hosts ----------------------------------------------------------------------------

_MESSAGE_TYPES = [
    0x00,
    0x61,
    0x62,
    0x63,
    0x65,
    0x69,
    0x6A,
    0x6B,
    0x6C,
    0x6D,
    0x6E,
    0x71,
    0x72,
    0x73,
]

# What a hostile or buggy host sends: raw bytes, messages of every type with random parameter
# bytes, slot and data (an UnknownCommand with a known bMessageType encodes to that command),
# and the commands that move the slot along, so that APDUs really reach the card.
_bulk = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda t, slot, seq, params, data: encode(UnknownCommand(t, slot, seq, params, data)),
        st.sampled_from(_MESSAGE_TYPES),
        st.sampled_from([0, 0, 0, 1]),
        st.integers(0, 255),
        st.binary(min_size=3, max_size=3),
        st.binary(max_size=300),
    ),
    st.integers(0, 255).map(lambda seq: encode(PC_to_RDR_IccPowerOn(0, seq))),
    st.builds(
        lambda seq, data, level: encode(PC_to_RDR_XfrBlock(0, seq, data, 0, level)),
        st.integers(0, 255),
        st.binary(max_size=600),
        st.sampled_from([0, 0, 0, 1, 2, 3, 0x10, 0x10, 7]),
    ),
)
_ACTIONS = [
    "insert",
    "remove",
    "power-on",
    "apdu",
    "apdu",
    "next-block",
    "tick",
    "answer",
    "answer",
    "fail",
    "abort",
    "abort-half",
    "reset",
    "read",
]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            _bulk.map(lambda data: ("bulk", data)),
            st.tuples(st.sampled_from(_ACTIONS), st.binary(max_size=600)),
        ),
        max_size=50,
    )
)
def test_any_sequence_of_host_and_card_events_keeps_the_reader_consistent(
    steps: list[tuple[str, bytes]],
) -> None:
    host = powered(SMALL)
    pending: list[int] = []
    errors: list[str] = []
    for kind, data in steps:
        if kind == "bulk":
            try:
                host.reader.receive_bulk_out(data, host.now)
            except CCIDRemoteProtocolError as error:
                errors.append(error.field)
        elif kind == "insert":
            host.reader.insert_card(TEST_ATR)
        elif kind == "remove":
            host.reader.remove_card()
        elif kind == "power-on":
            host.reader.discard_partial_command()
            host.send(PC_to_RDR_IccPowerOn(0, 1))
        elif kind == "apdu":
            # As libccid: blocks of at most dwMaxCCIDMessageLength - 10, chained.
            host.reader.discard_partial_command()
            blocks = [data[i : i + 261] for i in range(0, len(data), 261)] or [b""]
            for index, block in enumerate(blocks):
                last = index == len(blocks) - 1
                level = (0 if last else 1) if index == 0 else (2 if last else 3)
                host.send(PC_to_RDR_XfrBlock(0, index, block, 0, level))
        elif kind == "next-block":
            host.reader.discard_partial_command()
            host.send(PC_to_RDR_XfrBlock(0, 2, b"", 0, 0x10))
        elif kind == "tick":
            host.tick(1.0)
        elif kind in ("answer", "fail") and pending:
            request = pending.pop(0)
            if kind == "answer":
                host.reader.apdu_response(request, data + OK)
            else:
                host.reader.apdu_failed(request)
        elif kind == "abort":
            host.reader.abort_request(0, 9)
            host.reader.discard_partial_command()
            host.send(PC_to_RDR_Abort(0, 9))
        elif kind == "abort-half":
            host.reader.abort_request(0, 0)
        elif kind == "reset":
            host.reader.reset()
        elif kind == "read":
            for response in host.responses():
                assert response.bSlot in (0, 1)
            note = host.notification()
            if note is not None:
                assert isinstance(decode_interrupt(note), RDR_to_PC_NotifySlotChange)
        for event in host.events():
            if isinstance(event, APDURequested):
                assert len(event.apdu) <= MAX_APDU_SIZE
                pending.append(event.request)
        # Bounded: the last command's answer, the card's answer or a time extension.
        assert host.reader.queued_responses <= 3
        assert host.reader.get_timer() is None or host.reader.busy
    assert set(errors) <= {"dwLength"}
