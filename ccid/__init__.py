"""A USB CCID rev 1.1 smart-card reader and the USB/IP server that exports it (in progress)."""
