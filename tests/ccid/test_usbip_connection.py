"""The sans-IO connections, the server's against the client's with no socket between them:
the OP exchange, URB bookkeeping by seqnum, and every unlink race Linux vhci can produce."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccid.usb import SetupPacket, Speed
from ccid.usbip import (
    CmdSubmit,
    CmdUnlink,
    DevlistReceived,
    DevlistRequested,
    Direction,
    ExportedDevice,
    ImportAccepted,
    ImportRefused,
    ImportRequested,
    OpRepImport,
    OpReqImport,
    OpStatus,
    PortReset,
    RetSubmit,
    RetUnlink,
    TransferFlags,
    UnlinkAnswered,
    UnlinkRequested,
    URBCompleted,
    URBRefused,
    URBStatus,
    URBSubmitted,
    URBUnlinked,
    USBIPClientConnection,
    USBIPClientState,
    USBIPLocalProtocolError,
    USBIPRemoteProtocolError,
    USBIPServerConnection,
    USBIPServerState,
    encode_usbip,
)
from ccid.usbip.events import USBIPClientEvent, USBIPServerEvent

from .usbip_fake import BULK_IN, BULK_OUT, INTERRUPT_IN
from .usbip_fake import EXPORTED as DEVICE

GET_DEVICE_DESCRIPTOR = SetupPacket(0x80, 6, 0x0100, 0, 64)
PORT_RESET = SetupPacket(0x23, 3, 4, 1, 0)


class Pair:
    """A client and a server connection wired back to back."""

    def __init__(self, *, max_pending_urbs: int = 8, first_seqnum: int = 1) -> None:
        self.server = USBIPServerConnection(max_pending_urbs=max_pending_urbs)
        self.client = USBIPClientConnection(first_seqnum=first_seqnum)

    def to_server(self) -> list[USBIPServerEvent]:
        return self.server.receive_data(self.client.data_to_send())

    def to_client(self) -> list[USBIPClientEvent]:
        return self.client.receive_data(self.server.data_to_send())

    def imported(self) -> Pair:
        self.client.request_import("1-1")
        assert self.to_server() == [ImportRequested("1-1")]
        self.server.accept_import(DEVICE)
        assert self.to_client() == [ImportAccepted(DEVICE.without_interfaces())]
        return self

    def submit_in(self, endpoint: int, length: int, flags: int = 0) -> int:
        seqnum = self.client.submit(
            endpoint & 0x7F, Direction.IN, length=length, transfer_flags=flags
        )
        (event,) = self.to_server()
        assert isinstance(event, URBSubmitted)
        assert event.submit.seqnum == seqnum
        return seqnum


# --- OP phase -------------------------------------------------------------------------------


def test_devlist_lists_each_device_with_its_interfaces_then_the_exchange_is_over() -> None:
    pair = Pair()
    pair.client.request_devlist()
    assert pair.to_server() == [DevlistRequested()]
    pair.server.send_devlist([DEVICE])
    assert pair.to_client() == [DevlistReceived((DEVICE,), OpStatus.OK)]
    assert pair.server.state is USBIPServerState.CLOSED
    assert DEVICE.interfaces[0].bInterfaceClass == 0x0B


def test_import_echoes_the_busid_and_opens_the_urb_phase() -> None:
    pair = Pair().imported()
    assert pair.server.state is USBIPServerState.URB
    assert pair.client.device is not None
    assert pair.client.device.busid == "1-1"
    assert pair.client.device.devid == 0x00010002
    assert pair.client.device.speed == Speed.FULL


@pytest.mark.parametrize("status", [OpStatus.NODEV, OpStatus.DEV_BUSY])
def test_a_refused_import_carries_only_the_status(status: OpStatus) -> None:
    pair = Pair()
    pair.client.request_import("9-9")
    pair.to_server()
    pair.server.refuse_import(status)
    assert pair.server.data_to_send() == encode_refusal(status)
    assert pair.server.state is USBIPServerState.CLOSED


def encode_refusal(status: OpStatus) -> bytes:
    return bytes.fromhex("0111 0003") + status.to_bytes(4, "big")


def test_client_reports_a_refused_import_with_its_busid() -> None:
    pair = Pair()
    pair.client.request_import("9-9")
    pair.to_server()
    pair.server.refuse_import(OpStatus.NODEV)
    assert pair.to_client() == [ImportRefused("9-9", OpStatus.NODEV)]


def test_the_server_cannot_answer_an_import_with_another_busid() -> None:
    pair = Pair()
    pair.client.request_import("1-2")
    pair.to_server()
    with pytest.raises(USBIPLocalProtocolError):
        pair.server.accept_import(DEVICE)


def test_a_client_refuses_an_import_reply_for_another_busid() -> None:
    client = USBIPClientConnection()
    client.request_import("1-2")
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        client.receive_data(bytes.fromhex("0111 0003 00000000") + _record(DEVICE))
    assert caught.value.field == "OP_REP_IMPORT.busid"


def _record(device: ExportedDevice) -> bytes:
    return encode_usbip(OpRepImport(OpStatus.OK, device.without_interfaces()))[8:]


def test_urbs_sent_with_the_import_request_run_once_it_is_accepted() -> None:
    pair = Pair()
    pair.client.request_import("1-1")
    early = b"".join(
        encode_usbip(CmdSubmit(seqnum, DEVICE.devid, Direction.IN, 2, transfer_buffer_length=10))
        for seqnum in (1, 2)
    )
    events = pair.server.receive_data(pair.client.data_to_send() + early)
    assert events == [ImportRequested("1-1")]
    assert pair.server.pending_urbs == {}  # nothing runs before the decision
    # The core goes on by itself: no second receive_data call.
    events = pair.server.accept_import(DEVICE)
    assert [e.submit.seqnum for e in events if isinstance(e, URBSubmitted)] == [1, 2]
    assert len(events) == 2
    assert not pair.server.pending
    assert pair.server.complete(1, data=b"hi")
    # OP_REP_IMPORT goes out before the answer to a URB that came with the request.
    reply = encode_usbip(OpRepImport(OpStatus.OK, DEVICE.without_interfaces()))
    assert pair.server.data_to_send() == reply + encode_usbip(RetSubmit(1, 0, 2, data=b"hi"))


def test_urbs_sent_with_a_refused_import_are_never_run() -> None:
    server = USBIPServerConnection()
    early = encode_usbip(CmdSubmit(1, DEVICE.devid, Direction.IN, 2, transfer_buffer_length=10))
    server.receive_data(encode_usbip(OpReqImport("1-1")) + early)
    server.refuse_import(OpStatus.DEV_BUSY)
    assert server.receive_data(b"") == []
    assert server.state is USBIPServerState.CLOSED


def test_requests_before_a_bad_one_are_reported_and_the_error_held() -> None:
    pair = Pair().imported()
    good = encode_usbip(CmdSubmit(7, DEVICE.devid, Direction.IN, 2, transfer_buffer_length=8))
    bad = encode_usbip(CmdSubmit(8, 0xDEAD, Direction.IN, 2, transfer_buffer_length=8))
    (event,) = pair.server.receive_data(good + bad)
    assert isinstance(event, URBSubmitted)
    assert pair.server.error is not None
    assert pair.server.error.field == "CMD_SUBMIT.devid"
    assert pair.server.complete(7, data=b"ok")  # the good URB may still be answered
    with pytest.raises(USBIPRemoteProtocolError):
        pair.server.receive_data(b"")
    assert pair.server.state is USBIPServerState.CLOSED


def test_a_flood_sent_with_the_import_request_comes_in_batches() -> None:
    server = USBIPServerConnection(max_pending_urbs=100, max_requests=4)
    early = b"".join(
        encode_usbip(CmdSubmit(seqnum, DEVICE.devid, Direction.IN, 2, transfer_buffer_length=10))
        for seqnum in range(1, 11)
    )
    server.receive_data(encode_usbip(OpReqImport("1-1")) + early)
    batches = [server.accept_import(DEVICE)]
    while server.pending:  # the same bound per call as receive_data's, vscard's `pending`
        batches.append(server.receive_data(b""))
    assert [len(batch) for batch in batches] == [4, 4, 2]


def test_answers_in_the_wrong_state_are_local_errors() -> None:
    server = USBIPServerConnection()
    with pytest.raises(USBIPLocalProtocolError):
        server.send_devlist([])
    with pytest.raises(USBIPLocalProtocolError):
        server.accept_import(DEVICE)
    client = USBIPClientConnection()
    with pytest.raises(USBIPLocalProtocolError):
        client.submit(2, Direction.IN, length=8)


# --- URBs -----------------------------------------------------------------------------------


def test_in_urb_is_answered_with_its_data_and_never_more_than_asked() -> None:
    pair = Pair().imported()
    seqnum = pair.submit_in(BULK_IN, 4)
    with pytest.raises(ValueError, match="asked for 4 bytes"):
        pair.server.complete(seqnum, data=b"12345")
    assert seqnum in pair.server.pending_urbs  # the refused answer changed nothing
    assert pair.server.complete(seqnum, data=b"1234")
    (event,) = pair.to_client()
    assert isinstance(event, URBCompleted)
    assert event.ret == RetSubmit(seqnum, 0, 4, data=b"1234")


def test_out_urb_reply_carries_the_bytes_accepted() -> None:
    pair = Pair().imported()
    seqnum = pair.client.submit(BULK_OUT, Direction.OUT, data=b"abcdef")
    (event,) = pair.to_server()
    assert isinstance(event, URBSubmitted)
    assert event.submit.data == b"abcdef"
    assert pair.server.complete(seqnum, actual_length=4)
    (done,) = pair.to_client()
    assert isinstance(done, URBCompleted)
    assert done.ret.actual_length == 4
    assert done.ret.data == b""


def test_out_urb_reply_defaults_to_everything_accepted() -> None:
    pair = Pair().imported()
    seqnum = pair.client.submit(BULK_OUT, Direction.OUT, data=b"abc")
    pair.to_server()
    pair.server.complete(seqnum)
    (done,) = pair.to_client()
    assert isinstance(done, URBCompleted)
    assert done.ret.actual_length == 3


def test_control_urb_carries_its_setup_and_a_stall_is_status_minus_32() -> None:
    pair = Pair().imported()
    seqnum = pair.client.submit(
        0, Direction.IN, length=10, setup=SetupPacket(0x80, 6, 0x0600, 0, 10)
    )
    (event,) = pair.to_server()
    assert isinstance(event, URBSubmitted)
    assert event.submit.setup_packet == SetupPacket(0x80, 6, 0x0600, 0, 10)
    pair.server.complete(seqnum, status=URBStatus.EPIPE)
    (done,) = pair.to_client()
    assert isinstance(done, URBCompleted)
    assert done.ret.status == -32


def test_replies_may_come_in_any_order() -> None:
    pair = Pair().imported()
    first = pair.submit_in(INTERRUPT_IN, 8)
    second = pair.submit_in(BULK_IN, 8)
    pair.server.complete(second, data=b"bulk")
    pair.server.complete(first, data=b"\x50\x03")
    events = pair.to_client()
    assert [(e.submit.seqnum, e.ret.data) for e in events if isinstance(e, URBCompleted)] == [
        (second, b"bulk"),
        (first, b"\x50\x03"),
    ]


def test_short_in_answer_to_a_short_not_ok_urb_is_eremoteio_with_its_data() -> None:
    pair = Pair().imported()
    seqnum = pair.submit_in(BULK_IN, 64, TransferFlags.SHORT_NOT_OK)
    pair.server.complete(seqnum, data=b"abc")
    (done,) = pair.to_client()
    assert isinstance(done, URBCompleted)
    assert (done.ret.status, done.ret.data) == (URBStatus.EREMOTEIO, b"abc")


def test_usbip_win2_number_of_packets_minus_one_is_a_plain_urb() -> None:
    pair = Pair().imported()
    pair.client.submit(BULK_IN & 0x7F, Direction.IN, length=8, number_of_packets=-1)
    (event,) = pair.to_server()
    assert isinstance(event, URBSubmitted)
    assert event.submit.number_of_packets == -1


def test_a_seqnum_submitted_twice_while_pending_breaks_the_protocol() -> None:
    pair = Pair().imported()
    seqnum = pair.submit_in(BULK_IN, 8)
    duplicate = CmdSubmit(seqnum, DEVICE.devid, Direction.IN, 2, transfer_buffer_length=8)
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        pair.server.receive_data(encode_usbip(duplicate))
    assert caught.value.field == "CMD_SUBMIT.seqnum"
    assert pair.server.state is USBIPServerState.CLOSED


def test_urbs_for_another_devid_break_the_protocol_as_in_the_linux_stub() -> None:
    pair = Pair().imported()
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        pair.server.receive_data(encode_usbip(CmdUnlink(5, 0x00020003, 1)))
    assert caught.value.field == "CMD_UNLINK.devid"


def test_urbs_past_the_pending_limit_are_answered_enomem_at_once() -> None:
    pair = Pair(max_pending_urbs=2).imported()
    pair.submit_in(BULK_IN, 8)
    pair.submit_in(INTERRUPT_IN, 8)
    third = pair.client.submit(2, Direction.IN, length=8)
    (event,) = pair.to_server()
    assert isinstance(event, URBRefused)
    assert event.status == URBStatus.ENOMEM
    (done,) = pair.to_client()
    assert isinstance(done, URBCompleted)
    assert (done.submit.seqnum, done.ret.status) == (third, -12)
    assert len(pair.server.pending_urbs) == 2


def test_port_reset_is_answered_ok_and_flushes_every_pending_urb() -> None:
    pair = Pair().imported()
    parked = pair.submit_in(BULK_IN, 8)
    reset = pair.client.submit(0, Direction.OUT, setup=PORT_RESET)
    assert pair.to_server() == [PortReset(reset, (parked,))]
    assert not pair.server.pending_urbs
    events = pair.to_client()
    assert [(e.submit.seqnum, e.ret.status) for e in events if isinstance(e, URBCompleted)] == [
        (parked, URBStatus.ESHUTDOWN),
        (reset, 0),
    ]
    assert not pair.server.complete(parked, data=b"late")


def test_seqnums_wrap_and_skip_those_still_pending() -> None:
    pair = Pair(first_seqnum=0xFFFFFFFF).imported()
    assert pair.submit_in(BULK_IN, 8) == 0xFFFFFFFF
    assert pair.submit_in(BULK_IN, 8) == 0


# --- unlink races ---------------------------------------------------------------------------


def test_unlink_of_a_pending_urb_answers_minus_104_with_its_own_seqnum() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 64)
    unlink = pair.client.unlink(victim)
    assert pair.to_server() == [UnlinkRequested(unlink, victim, cancelled=True)]
    assert pair.server.data_to_send() == encode_usbip(RetUnlink(unlink, -104))
    assert victim not in pair.server.pending_urbs


def test_a_cancelled_urb_is_never_answered() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 64)
    unlink = pair.client.unlink(victim)
    pair.to_server()
    # The device's answer arrives after the unlink was read: it is dropped, nothing is sent.
    assert not pair.server.complete(victim, data=b"late")
    assert pair.server.data_to_send() == encode_usbip(RetUnlink(unlink, -104))


def test_unlink_after_the_answer_went_out_answers_zero() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 64)
    pair.server.complete(victim, data=b"data")  # RET_SUBMIT crosses the CMD_UNLINK
    unlink = pair.client.unlink(victim)
    assert pair.to_server() == [UnlinkRequested(unlink, victim, cancelled=False)]
    events = pair.to_client()
    assert isinstance(events[0], URBCompleted)
    assert events[0].ret.data == b"data"
    assert events[1] == UnlinkAnswered(unlink, victim, 0)


def test_unlink_of_a_seqnum_never_submitted_answers_zero() -> None:
    pair = Pair().imported()
    unlink = pair.client.unlink(12345)
    assert pair.to_server() == [UnlinkRequested(unlink, 12345, cancelled=False)]
    assert pair.server.data_to_send() == encode_usbip(RetUnlink(unlink, 0))


def test_submit_and_unlink_in_one_segment_cancel_before_any_work() -> None:
    pair = Pair().imported()
    victim = pair.client.submit(2, Direction.IN, length=8)
    unlink = pair.client.unlink(victim)
    events = pair.to_server()
    assert isinstance(events[0], URBSubmitted)
    assert events[1] == UnlinkRequested(unlink, victim, cancelled=True)
    assert not pair.server.pending_urbs


def test_client_ends_the_victim_when_its_unlink_is_answered() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 8)
    unlink = pair.client.unlink(victim)
    pair.to_server()
    events = pair.to_client()
    assert isinstance(events[0], URBUnlinked)
    assert (events[0].submit.seqnum, events[0].status) == (victim, -104)
    assert events[1] == UnlinkAnswered(unlink, victim, -104)
    assert not pair.client.pending_urbs


def test_client_refuses_a_ret_submit_for_a_urb_its_unlink_ended_as_vhci_does() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 8)
    unlink = pair.client.unlink(victim)
    pair.to_server()
    pair.server.data_to_send()
    buggy_server = encode_usbip(RetUnlink(unlink, -104)) + encode_usbip(
        RetSubmit(victim, 0, 4, data=b"late")
    )
    # The good reply comes first, its events too; the error waits in .error.
    events = pair.client.receive_data(buggy_server)
    assert [type(event) for event in events] == [URBUnlinked, UnlinkAnswered]
    error = pair.client.error
    assert error is not None
    assert error.field == "RET_SUBMIT.seqnum"
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        pair.client.receive_data(b"")  # sticky
    assert caught.value is error
    assert pair.client.state is USBIPClientState.CLOSED


def test_client_refuses_a_ret_unlink_carrying_the_victims_seqnum() -> None:
    pair = Pair().imported()
    victim = pair.submit_in(BULK_IN, 8)
    pair.client.unlink(victim)
    pair.to_server()
    pair.server.data_to_send()
    with pytest.raises(USBIPRemoteProtocolError) as caught:
        pair.client.receive_data(encode_usbip(RetUnlink(victim, -104)))
    assert caught.value.field == "RET_UNLINK.seqnum"


def test_close_returns_the_pending_urbs_and_answers_nothing_more() -> None:
    pair = Pair().imported()
    first = pair.submit_in(BULK_IN, 8)
    second = pair.submit_in(INTERRUPT_IN, 8)
    assert pair.server.close() == (first, second)
    assert not pair.server.complete(first, data=b"x")
    assert pair.server.data_to_send() == b""
    assert pair.server.receive_data(b"anything") == []


# --- properties -----------------------------------------------------------------------------

Action = tuple[str, int]
ACTIONS = st.one_of(
    st.tuples(st.just("submit"), st.integers(0, 1)),
    st.tuples(st.sampled_from(["complete", "unlink"]), st.integers(0, 15)),
    st.tuples(st.sampled_from(["to_server", "to_client"]), st.just(0)),
)


@settings(max_examples=300)
@given(st.lists(ACTIONS, max_size=40))
def test_every_urb_ends_exactly_once_whatever_the_interleaving(actions: list[Action]) -> None:
    """Submits, unlinks, completions and deliveries in any order: the client (with vhci's
    checks) never sees a reply it must refuse, and each URB ends once, answered or unlinked."""
    pair = Pair(max_pending_urbs=64).imported()
    submitted: list[int] = []
    ended: list[int] = []

    def to_client() -> None:
        for event in pair.to_client():
            if isinstance(event, URBCompleted | URBUnlinked):
                ended.append(event.submit.seqnum)

    for action, argument in actions:
        if action == "submit":
            direction = Direction.IN if argument else Direction.OUT
            data = b"" if argument else b"out"
            submitted.append(pair.client.submit(2, direction, length=8, data=data))
        elif action == "unlink" and submitted:
            pair.client.unlink(submitted[argument % len(submitted)])
        elif action == "complete" and pair.server.pending_urbs:
            seqnums = list(pair.server.pending_urbs)
            seqnum = seqnums[argument % len(seqnums)]
            is_in = pair.server.pending_urbs[seqnum].direction == Direction.IN
            pair.server.complete(seqnum, data=b"in" if is_in else b"")
        elif action == "to_server":
            pair.to_server()
        elif action == "to_client":
            to_client()
    # Drain: deliver everything, answer what is left, deliver the answers.
    pair.to_server()
    for seqnum in list(pair.server.pending_urbs):
        is_in = pair.server.pending_urbs[seqnum].direction == Direction.IN
        pair.server.complete(seqnum, data=b"in" if is_in else b"")
    to_client()
    assert sorted(ended) == sorted(submitted)
    assert not pair.client.pending_urbs


@given(st.binary(max_size=400))
def test_any_bytes_after_the_import_raise_protocol_errors_only(wire: bytes) -> None:
    pair = Pair().imported()
    try:
        pair.server.receive_data(wire)
    except USBIPRemoteProtocolError:
        assert pair.server.state is USBIPServerState.CLOSED
    assert len(pair.server.pending_urbs) <= 8
