"""start_eagerly: a URB that finishes at once costs no task; one that waits behaves as a task."""

from __future__ import annotations

import asyncio

import pytest

from cardfloor.aio.eager import start_eagerly


async def test_a_coroutine_that_does_not_wait_runs_now_and_makes_no_task() -> None:
    ran: list[str] = []

    async def quick() -> None:
        ran.append("done")

    assert start_eagerly(quick()) is None
    assert ran == ["done"]


async def test_a_coroutine_that_waits_goes_on_as_a_task() -> None:
    event = asyncio.Event()
    steps: list[str] = []

    async def parked() -> None:
        steps.append("before")
        await event.wait()
        steps.append("after")

    task = start_eagerly(parked(), name="parked")
    assert task is not None
    assert task.get_name() == "parked"
    assert steps == ["before"]  # ran inline up to the wait
    event.set()
    await task
    assert steps == ["before", "after"]


@pytest.mark.parametrize("stepped", [False, True], ids=["before-its-first-step", "parked"])
async def test_cancelling_the_task_reaches_the_coroutine(stepped: bool) -> None:
    event = asyncio.Event()
    cleaned: list[bool] = []

    async def parked() -> None:
        try:
            await event.wait()
        finally:
            cleaned.append(True)

    task = start_eagerly(parked())
    assert task is not None
    if stepped:
        await asyncio.sleep(0)  # one loop turn: the task's first step
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert not event._waiters  # the Event forgot the waiter: nothing leaks


async def test_errors_surface_where_they_happen() -> None:
    async def fails_at_once() -> None:
        raise ValueError("inline")

    with pytest.raises(ValueError, match="inline"):
        start_eagerly(fails_at_once())

    async def fails_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    task = start_eagerly(fails_later())
    assert task is not None
    with pytest.raises(ValueError, match="later"):
        await task


async def test_a_bare_yield_first_still_lets_the_loop_run() -> None:
    order: list[str] = []

    async def polite() -> None:
        await asyncio.sleep(0)
        order.append("coroutine")

    task = start_eagerly(polite())
    order.append("caller")
    assert task is not None
    await task
    assert order == ["caller", "coroutine"]
