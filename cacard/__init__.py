"""A CAC (GSC-IS 2.1) smart-card emulator (in progress)."""
