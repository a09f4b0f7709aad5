"""The USB/IP server's allow list: importers from other addresses are closed at once."""

from __future__ import annotations

import asyncio
import ipaddress

from ccid.usbip import serve_usbip

OP_REQ_DEVLIST = bytes.fromhex("0111 8005 00000000")


async def devlist_from(source: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(OP_REQ_DEVLIST)
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


async def test_only_allowed_importers_get_the_device_list() -> None:
    allow = [ipaddress.ip_network("127.0.0.1/32")]
    async with await serve_usbip(port=0, allow=allow) as server:
        assert (await devlist_from("127.0.0.1", server.port))[:4] == bytes.fromhex("0111 0005")
        assert await devlist_from("127.0.0.2", server.port) == b""


async def test_importers_per_source_address_are_limited() -> None:
    async with await serve_usbip(port=0, max_connections_per_source=1) as server:
        # Hold one connection from 127.0.0.1 open (it has not sent its OP request yet).
        _, held = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            # The server counts it once it has accepted it; no event says when.
            while server.connections < 1:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert await devlist_from("127.0.0.1", server.port) == b""
            assert (await devlist_from("127.0.0.3", server.port))[:4] == bytes.fromhex("0111 0005")
        finally:
            held.close()
