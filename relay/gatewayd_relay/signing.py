"""Signed commands exactly as the MQTT contract says, written from the contract (not imported
from the gateway, so a misreading on either side shows up in the end-to-end tests).

Canonical form: the command without ``sig``, ``json.dumps(sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` as UTF-8; ``sig`` = HMAC-SHA256 with the
gateway's 32-byte command key, hex. Never log a key or a signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

KEY_BYTES = 32


def canonical(cmd: Mapping[str, Any]) -> bytes:
    body = {k: v for k, v in cmd.items() if k != "sig"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(key: bytes, cmd: Mapping[str, Any]) -> dict[str, Any]:
    if len(key) != KEY_BYTES:
        raise ValueError("a gateway command key is 32 bytes")
    out = {k: v for k, v in cmd.items() if k != "sig"}
    out["sig"] = hmac.new(key, canonical(out), hashlib.sha256).hexdigest()
    return out


def command(
    key: bytes,
    device: str,
    action: str,
    args: Mapping[str, Any] | None,
    user: str,
    lifetime: float,
    now: float | None = None,
    cid: str | None = None,
) -> dict[str, Any]:
    """A fresh signed command: a random id the gateway has never seen (``new_id``), a short
    life."""
    iat = time.time() if now is None else now
    return sign(
        key,
        {
            "id": cid or new_id(),
            "device": device,
            "action": action,
            "args": dict(args or {}),
            "user": user,
            "iat": round(iat, 3),
            "exp": round(iat + lifetime, 3),
        },
    )


def new_id() -> str:
    return "r-" + secrets.token_hex(12)


def fingerprint(key: bytes) -> str:
    """The same fingerprint `gatewayd keygen` prints, so an installer can compare the two."""
    return "sha256:" + hashlib.sha256(b"gatewayd-command-key\0" + key).hexdigest()[:16]
