"""asyncio adapters around the sans-IO VSCard connections: they only move bytes and await."""

from .client import APDUHandler, Client, ClientReader, ProtocolHandler, ResetHandler, connect
from .server import Server, Session, SessionHandler, serve

__all__ = [
    "APDUHandler",
    "Client",
    "ClientReader",
    "ProtocolHandler",
    "ResetHandler",
    "Server",
    "Session",
    "SessionHandler",
    "connect",
    "serve",
]
