"""Bulk-IN transfers get at most what they ask for, one message at a time, and never an
empty answer (the ZLP trap of QEMU's usb-ccid)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ccid.response_queue import ResponseQueue


def test_short_reads_get_a_message_in_pieces() -> None:
    queue = ResponseQueue()
    queue.put(bytes(range(150)))
    assert queue.read(64) == bytes(range(64))
    assert queue.read(64) == bytes(range(64, 128))
    assert queue.read(64) == bytes(range(128, 150))
    assert queue.read(64) == b""


def test_one_read_never_mixes_two_messages() -> None:
    queue = ResponseQueue()
    queue.put(b"A" * 10)
    queue.put(b"B" * 10)
    assert queue.read(65556) == b"A" * 10
    assert queue.read(65556) == b"B" * 10


def test_a_message_that_fills_the_read_exactly_leaves_no_empty_answer_behind() -> None:
    queue = ResponseQueue()
    queue.put(b"M" * 64)
    queue.put(b"N" * 10)
    assert queue.read(64) == b"M" * 64
    assert queue.read(64) == b"N" * 10  # not b"": no stray zero-length packet
    assert len(queue) == 0


def test_clear_drops_a_partly_read_message_too() -> None:
    queue = ResponseQueue()
    queue.put(b"A" * 100)
    queue.put(b"B")
    queue.read(10)
    assert queue.clear() == 2
    assert queue.read(100) == b""


@given(
    messages=st.lists(st.binary(min_size=1, max_size=300), max_size=5),
    sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=50),
)
def test_reads_return_each_message_whole_and_in_order(
    messages: list[bytes], sizes: list[int]
) -> None:
    queue = ResponseQueue()
    for message in messages:
        queue.put(message)
    received: list[bytes] = []
    current = b""
    index = 0
    while len(queue):
        size = sizes[index % len(sizes)]
        index += 1
        piece = queue.read(size)
        assert 0 < len(piece) <= size
        current += piece
        if len(queue) < len(messages) - len(received):
            received.append(current)
            current = b""
    assert received == messages
