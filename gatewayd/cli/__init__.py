"""The `gatewayd` command: one click group per file, imported lazily so --help stays fast."""
