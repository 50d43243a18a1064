"""Signed commands: the canonical form and HMAC-SHA256, exactly as the MQTT contract says
(docs/contract/signing.md, with its test vectors in docs/contract/signing-vectors.json).

Used by the command gate to verify, and by the CLI, demo and tests to sign as the platform
would. Never log a key or a full signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any


def canonical(cmd: Mapping[str, Any]) -> bytes:
    """The bytes that are signed, as docs/contract/signing.md specifies them. Raises
    ValueError for what has no canonical form there (NaN, infinities, a lone surrogate)."""
    body = {k: v for k, v in cmd.items() if k != "sig"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode()


def signature(key: bytes, cmd: Mapping[str, Any]) -> str:
    return hmac.new(key, canonical(cmd), hashlib.sha256).hexdigest()


def sign(key: bytes, cmd: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``cmd`` with its ``sig``, as the platform publishes it."""
    out = {k: v for k, v in cmd.items() if k != "sig"}
    out["sig"] = signature(key, out)
    return out


def verify(key: bytes, cmd: Mapping[str, Any]) -> bool:
    """True only for a command signed with ``key``. Anything that cannot even be put in
    canonical form (a lone surrogate, NaN, nesting too deep) is simply not verified."""
    sig = cmd.get("sig")
    if not isinstance(sig, str) or len(sig) != 64 or not sig.isascii():
        return False
    try:
        expected = signature(key, cmd)
    except (UnicodeEncodeError, RecursionError, ValueError):
        return False
    return hmac.compare_digest(expected, sig.lower())


def fingerprint(key: bytes) -> str:
    """What installers tell the platform to identify a key without revealing it."""
    return "sha256:" + hashlib.sha256(b"gatewayd-command-key\0" + key).hexdigest()[:16]
