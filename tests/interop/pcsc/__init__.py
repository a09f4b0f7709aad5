"""Host PC/SC as a real peer: a private pcscd with vsmartcard's vpcd, and vicc as the card."""
