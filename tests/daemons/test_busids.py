"""Bus id memory: a returning reader gets its bus id back, new readers keep off remembered ones,
and the memory stays bounded in size and time."""

from __future__ import annotations

import random

import pytest

from daemons.busids import BusidMemory, reader_identity


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_identity_is_the_client_address_without_its_port_and_the_reader_name() -> None:
    assert reader_identity("192.0.2.7:40112", "r") == ("192.0.2.7", "r")
    assert reader_identity("[2001:db8::1]:40112", "r") == ("2001:db8::1", "r")
    assert reader_identity("192.0.2.7:40113", "r") == reader_identity("192.0.2.7:5", "r")


def test_a_returning_reader_gets_its_bus_id_and_a_new_one_does_not_take_it() -> None:
    memory = BusidMemory()
    exported: set[str] = set()
    alice = memory.allocate("alice", exported)
    exported.add(alice)
    bob = memory.allocate("bob", exported)
    exported.add(bob)
    assert (alice, bob) == ("1-1", "1-2")
    exported.discard(alice)
    memory.release("alice", alice)
    carol = memory.allocate("carol", exported)  # 1-1 is free, but remembered for alice
    exported.add(carol)
    assert carol == "1-3"
    assert memory.allocate("alice", exported) == "1-1"


def test_a_storm_of_reconnects_in_any_order_gives_every_reader_its_own_id() -> None:
    memory = BusidMemory()
    exported: dict[str, str] = {}
    for index in range(200):
        exported[f"reader {index}"] = memory.allocate(f"reader {index}", exported.values())
    before = dict(exported)
    for name, busid in exported.items():
        memory.release(name, busid)
    exported.clear()
    names = list(before)
    random.Random(7).shuffle(names)
    newcomers = [memory.allocate(f"new {index}", exported.values()) for index in range(20)]
    for name in names:
        exported[name] = memory.allocate(name, [*exported.values(), *newcomers])
    assert exported == before
    assert set(newcomers).isdisjoint(before.values())


def test_two_equal_identities_at_once_each_keep_their_own_id() -> None:
    memory = BusidMemory()
    first = memory.allocate("twin", set())
    second = memory.allocate("twin", {first})
    assert (first, second) == ("1-1", "1-2")
    memory.release("twin", first)
    memory.release("twin", second)
    again = memory.allocate("twin", set())
    assert {again, memory.allocate("twin", {again})} == {"1-1", "1-2"}


def test_a_held_bus_id_is_not_given_twice_the_returning_reader_gets_the_next_free() -> None:
    memory = BusidMemory()
    memory.release("alice", memory.allocate("alice", set()))
    # Its old connection is not yet seen as dead: 1-1 is still exported.
    assert memory.allocate("alice", {"1-1"}) == "1-2"


def test_the_memory_is_bounded_and_forgets_the_least_recently_seen() -> None:
    memory = BusidMemory(capacity=3)
    for name in "abcd":
        memory.release(name, memory.allocate(name, set()))
    assert len(memory) == 3
    assert memory.remembered("a") == ()
    assert memory.allocate("e", set()) == "1-1"  # a's id, forgotten with it, is free again
    assert memory.remembered("d") == ("1-4",)


def test_ids_of_readers_gone_longer_than_keep_are_free_again() -> None:
    clock = Clock()
    memory = BusidMemory(keep=60, clock=clock)
    memory.release("alice", memory.allocate("alice", set()))
    clock.now = 59
    assert memory.allocate("bob", set()) == "1-2"
    clock.now = 120
    assert memory.allocate("carol", {"1-2"}) == "1-1"
    assert memory.remembered("alice") == ()


@pytest.mark.parametrize(("option", "value"), [("capacity", 0), ("keep", 0.0)])
def test_limits_must_be_positive(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        BusidMemory(**{option: value})  # type: ignore[arg-type]
