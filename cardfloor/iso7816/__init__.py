"""ISO/IEC 7816 as every package reads it: one parser for APDUs, one for ATRs, one table of
instructions. A second parser, however small, is a second opinion on what the guest sent."""
