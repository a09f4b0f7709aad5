"""The sans-IO policy of a shared card: when the guest holds it, when it lets go."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from daemons.card_lease import Action, CardLease, LeaseError, LeasePolicy, LeaseState
from daemons.vscclient import UsageError, parse_args, plan_from_args

POLICY = LeasePolicy(hold=0.5, wait=2.0)


def test_first_apdu_begins_then_resets_then_transmits() -> None:
    lease = CardLease(POLICY)
    assert lease.apdu(0.0) is Action.BEGIN
    assert lease.acquired(0.1) is Action.NOTHING
    assert lease.proceed() is Action.RESET_AND_TRANSMIT
    lease.answered(0.2)
    assert lease.apdu(0.3) is Action.TRANSMIT  # still held: no reset inside an operation
    lease.answered(0.4)
    assert lease.tick(0.8) is Action.NOTHING
    assert lease.wake_at() == pytest.approx(0.9)
    assert lease.tick(0.9) is Action.END
    assert lease.state is LeaseState.FREE


def test_keep_state_never_resets_unless_the_guest_reset_the_card() -> None:
    lease = CardLease(LeasePolicy(reset=False))
    lease.apdu(0.0)
    lease.acquired(0.0)
    assert lease.proceed() is Action.TRANSMIT
    lease.answered(0.0)
    assert lease.tick(10.0) is Action.END
    assert lease.reset_requested() is False  # free: the next transaction starts with it
    lease.apdu(11.0)
    lease.acquired(11.0)
    assert lease.proceed() is Action.RESET_AND_TRANSMIT


def test_a_reset_while_held_happens_at_once() -> None:
    lease = CardLease(POLICY)
    lease.apdu(0.0)
    lease.acquired(0.0)
    lease.proceed()
    lease.answered(0.0)
    assert lease.reset_requested() is True


def test_a_late_transaction_is_given_back() -> None:
    lease = CardLease(POLICY)
    assert lease.apdu(0.0) is Action.BEGIN
    assert lease.deadline == 2.0
    assert lease.gave_up(2.0) is Action.FAIL
    assert lease.acquired(5.0) is Action.END
    assert lease.state is LeaseState.FREE


def test_a_new_apdu_adopts_the_pending_request() -> None:
    lease = CardLease(POLICY)
    lease.apdu(0.0)
    lease.gave_up(2.0)
    assert lease.apdu(3.0) is Action.AWAIT  # no second SCardBeginTransaction
    assert lease.deadline == 5.0
    assert lease.acquired(4.0) is Action.NOTHING
    assert lease.proceed() is Action.RESET_AND_TRANSMIT


def test_events_out_of_turn_are_refused() -> None:
    lease = CardLease(POLICY)
    with pytest.raises(LeaseError):
        lease.answered(0.0)
    with pytest.raises(LeaseError):
        lease.acquired(0.0)
    lease.apdu(0.0)
    with pytest.raises(LeaseError):
        lease.apdu(0.0)
    with pytest.raises(LeaseError):
        lease.proceed()


def test_policy_bounds() -> None:
    with pytest.raises(ValueError, match="wait 0"):
        LeasePolicy(wait=0)
    with pytest.raises(ValueError, match="hold -1"):
        LeasePolicy(hold=-1)


@dataclass
class World:
    """The lease driven as the PC/SC card drives it, beside a host application; pcsc-lite
    grants the transaction to one of them at a time."""

    lease: CardLease
    now: float = 0.0
    we_hold: bool = False
    host_holds: bool = False
    begin_pending: bool = False
    guest_waiting: bool = False
    guest_at_card: bool = False
    failed: list[float] = field(default_factory=list)
    """How long each failed APDU waited."""
    asked_at: float = 0.0

    def run(self, action: Action) -> None:
        if action is Action.BEGIN:
            assert not self.begin_pending, "two SCardBeginTransaction at once"
            self.begin_pending = True
        elif action is Action.END:
            assert self.we_hold
            self.we_hold = False

    def step(self, event: str, dt: float) -> None:
        self.now += dt
        lease = self.lease
        if event == "guest" and not self.guest_waiting and not self.guest_at_card:
            self.asked_at = self.now
            action = lease.apdu(self.now)
            self.run(action)
            if action is Action.TRANSMIT:
                self.guest_at_card = True
            else:
                self.guest_waiting = True
        elif event == "answer" and self.guest_at_card:
            self.guest_at_card = False
            lease.answered(self.now)
        elif event == "host" and not self.host_holds and not self.we_hold:
            self.host_holds = True
        elif event == "host-end" and self.host_holds:
            self.host_holds = False
        # pcsc-lite grants a pending request once the card is free.
        if self.begin_pending and not self.host_holds:
            self.begin_pending = False
            self.we_hold = True
            if lease.acquired(self.now) is Action.END:
                self.we_hold = False
            elif self.guest_waiting:
                self.guest_waiting = False
                assert lease.proceed() in (Action.TRANSMIT, Action.RESET_AND_TRANSMIT)
                self.guest_at_card = True
        if self.guest_waiting and lease.deadline is not None and self.now >= lease.deadline:
            assert lease.gave_up(self.now) is Action.FAIL
            self.guest_waiting = False
            self.failed.append(self.now - self.asked_at)
        if lease.tick(self.now) is Action.END:
            self.run(Action.END)


EVENTS = st.lists(
    st.tuples(
        st.sampled_from(["guest", "answer", "host", "host-end", "time"]),
        st.floats(0, 3, allow_nan=False),
    ),
    max_size=60,
)


# A wait of 1.9999999999999982 s: float clocks.
FLOAT_WAIT = [("host", 0.0), ("guest", 0.0), ("guest", 2.0), ("guest", 2.0), ("guest", 3.0)]
FLOAT_WAIT += [("guest", 3.0), ("guest", 2.4293), ("guest", 2.4347), ("guest", 2.0)]


@given(EVENTS)
@example(FLOAT_WAIT)
def test_any_sequence_keeps_one_holder_and_lets_go(events: list[tuple[str, float]]) -> None:
    world = World(CardLease(POLICY))
    for event, dt in events:
        world.step(event, dt)
        assert not (world.we_hold and world.host_holds), "two holders"
        assert (world.lease.state is LeaseState.HELD) == world.we_hold
        # A failed APDU waited its bound (time moves in steps of at most 3 s; the waits are
        # differences of float clocks, exact to a few ulps only).
        assert all(POLICY.wait - 1e-9 <= waited <= POLICY.wait + 3 for waited in world.failed)
    # The guest stops: its last APDU is answered, the host application lets go.
    world.step("answer", 0)
    world.step("host-end", 0)
    world.step("time", POLICY.wait + POLICY.hold)
    world.step("answer", 0)
    world.step("time", POLICY.hold)
    assert not world.we_hold, "held after the idle time"
    assert world.lease.state is LeaseState.FREE


def test_vscclient_options_make_the_policy() -> None:
    plan = plan_from_args(parse_args(["--pcsc", "host", "2001"]))
    assert plan.lease == LeasePolicy()
    args = ["--pcsc-hold", "1200", "--pcsc-wait", "300", "--pcsc-keep-state", "host", "2001"]
    assert plan_from_args(parse_args(args)).lease == LeasePolicy(1.2, 0.3, reset=False)
    with pytest.raises(UsageError, match="--pcsc-wait 0"):
        plan_from_args(parse_args(["--pcsc-wait", "0", "host", "2001"]))
    with pytest.raises(SystemExit):
        parse_args(["--pcsc-hold", "0.5", "host", "2001"])
