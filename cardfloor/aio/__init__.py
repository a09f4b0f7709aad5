"""asyncio helpers the VSCard and USB/IP servers share; no protocol lives here."""
