"""Stop signals reach the loop whether it can take signal handlers (POSIX) or not (Windows)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

import pytest

from cardfloor.aio.signals import on_stop_signals


class WindowsLikeLoop(asyncio.SelectorEventLoop):
    """asyncio's loop with the signal methods Windows' loops have: AbstractEventLoop's, which
    raise NotImplementedError."""

    add_signal_handler = asyncio.AbstractEventLoop.add_signal_handler
    remove_signal_handler = asyncio.AbstractEventLoop.remove_signal_handler


LOOPS = {"POSIX": asyncio.new_event_loop, "Windows-like": WindowsLikeLoop}


async def stopped_by(signum: int) -> int:
    """Send ``signum`` to this process; the thread the stop callback ran in."""
    stopped = asyncio.Event()
    ran_in: list[int] = []

    def stop() -> None:
        ran_in.append(threading.get_ident())
        stopped.set()

    with on_stop_signals(stop):
        os.kill(os.getpid(), signum)
        await asyncio.wait_for(stopped.wait(), 10)
    return ran_in[0]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("loop", LOOPS)
def test_a_stop_signal_runs_the_callback_on_the_loop_and_the_old_handler_comes_back(
    loop: str, signum: int
) -> None:
    before = signal.getsignal(signum)
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        assert runner.run(stopped_by(signum)) == threading.get_ident()
    assert signal.getsignal(signum) == before


@pytest.mark.parametrize("loop", LOOPS)
def test_off_the_main_thread_nothing_is_set_and_nothing_fails(loop: str) -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    failures: list[BaseException] = []

    async def in_block() -> None:
        with on_stop_signals(lambda: None):
            pass

    def run() -> None:
        try:
            with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
                runner.run(in_block())
        except BaseException as error:
            failures.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert failures == []
    assert {signum: signal.getsignal(signum) for signum in before} == before
