"""Signers of gatewayd commands in other languages, and the generator of the test vectors."""
