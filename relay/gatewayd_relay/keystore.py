"""Gateway command keys at rest: AES-256-GCM under a master key that lives in a file of mode
0600 beside (not in) the database, so a copy of the database alone opens no door.

The gateway id is the associated data: a key row copied onto another house does not decrypt.
Nothing here logs a key.
"""

from __future__ import annotations

import os
import secrets
import stat

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MASTER_BYTES = 32
NONCE_BYTES = 12


class KeyStoreError(Exception):
    pass


def create_master(path: str) -> None:
    """Write a new random master key (hex) with mode 0600; never overwrites."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_bytes(MASTER_BYTES).hex() + "\n")


def load_master(path: str) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyStoreError(
            f"{path}: no master key (create one with `gatewayd-relay init`)"
        ) from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise KeyStoreError(f"{path}: mode {stat.S_IMODE(st.st_mode):o}; must be 0600")
    with open(path) as f:
        text = f.read().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != MASTER_BYTES:
        raise KeyStoreError(f"{path}: expected {2 * MASTER_BYTES} hex digits")
    return key


class KeyStore:
    def __init__(self, master: bytes) -> None:
        self._aead = AESGCM(master)

    def seal(self, gateway_id: str, key: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key, gateway_id.encode())

    def open(self, gateway_id: str, sealed: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], gateway_id.encode()
            )
        except InvalidTag:
            raise KeyStoreError(f"the stored key of {gateway_id} does not decrypt") from None
