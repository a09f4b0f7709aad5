"""Drive a running QEMU ``ccid-card-passthru`` with vscard's client and a toy card.

Start QEMU with a passthru card on a TCP port, for example::

    qemu-system-x86_64 ... -usb -device usb-ccid \\
        -chardev socket,id=ccid,server=on,wait=off,host=127.0.0.1,port=2001,nodelay=on \\
        -device ccid-card-passthru,chardev=ccid

then run ``python examples/drive_qemu.py 127.0.0.1 2001``. The guest sees a reader with a card
inserted; every APDU it sends is printed and answered by the toy card below. ``--once`` inserts
the card, removes it again and exits (what the README's demo does with a paused QEMU).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

import structlog

import vscard

# The ATR QEMU itself reports for an empty passthru slot (an Athena card, T=0).
ATR = bytes.fromhex("3BD518FF8091FE1FC38073C8211308")


async def toy_card(apdu: bytes) -> bytes:
    """A card that knows nothing: SELECT gets 6A82 (not found), anything else 6D00."""
    response = b"\x6a\x82" if apdu[1:2] == b"\xa4" else b"\x6d\x00"
    print(f"  guest APDU {apdu.hex(' ')} -> {response.hex(' ')}")
    return response


async def run(host: str, port: int, once: bool) -> None:
    print(f"Connecting to the VSCard host at {host}:{port} ...")
    async with await vscard.connect(host, port) as client:
        print(f"Handshake done: the host speaks VSCard version {client.host_version}.")
        reader = await client.add_reader("vscard example reader", transmit=toy_card)
        print(f"Reader added; the host gave it reader_id {reader.reader_id}.")
        await reader.insert(ATR)
        print(f"Card inserted with ATR {ATR.hex(' ')}; the host accepted it.")
        if once:
            await reader.remove_card()
            print("Card removed; the host acknowledged.")
        else:
            print("Serving the guest's APDUs; press Ctrl-C to stop.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            closed = asyncio.create_task(client.wait_closed())
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (closed, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, vscard.VSCardError):
                    await task
    print("Disconnected cleanly (card and reader removed first, as QEMU expects).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--once", action="store_true", help="insert, remove and exit")
    parser.add_argument("-d", "--debug", action="store_true", help="log every APDU")
    args = parser.parse_args()
    level = logging.DEBUG if args.debug else logging.WARNING
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))
    asyncio.run(run(args.host, args.port, args.once))


if __name__ == "__main__":
    main()
