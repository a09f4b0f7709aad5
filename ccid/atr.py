"""Moved to :mod:`cardfloor.iso7816.atr`; this name stays until no module imports it."""

from cardfloor.iso7816.atr import AnswerToReset, InterfaceBytes, parse_atr

__all__ = ["AnswerToReset", "InterfaceBytes", "parse_atr"]
