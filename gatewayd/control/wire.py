"""The control socket's wire format: what a request may look like, and how a refusal is coded.

One JSON object per line each way. A refusal is ``{"ok": false, "code": CODE, "error": LINE}``:
``code`` is for scripts, ``error`` one line for a person. The codes:

    invalid       malformed, oversized, too deeply nested, unknown command, bad arguments
    forbidden     this user may not use the socket; an action the rules or the socket refuse
    busy          too many clients at once (the connection is closed after this line)
    not_found     no such alarm, device or bus
    device_error  the device or its bus failed the request
    timeout       the device did not answer in time; or no request came on an idle connection
    internal      a fault of the daemon's own (logged on one line)

A request is checked before ``json.loads`` sees it: a line nested deeper than ``MAX_DEPTH``
would make the parser recurse (100 000 ``[`` is a RecursionError), so brackets are counted
first, outside strings, with C-speed byte operations. Pure functions: no I/O here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from itertools import accumulate
from typing import Any, Literal

MAX_LINE = 64 * 1024  # bytes in one request line
MAX_DEPTH = 16  # nesting of arrays and objects in one request (real ones use 2 or 3)

Code = Literal["invalid", "forbidden", "busy", "not_found", "device_error", "timeout", "internal"]
INVALID: Code = "invalid"
FORBIDDEN: Code = "forbidden"
BUSY: Code = "busy"
NOT_FOUND: Code = "not_found"
DEVICE_ERROR: Code = "device_error"
TIMEOUT: Code = "timeout"
INTERNAL: Code = "internal"

NOT_A_REQUEST = 'expected {"cmd": ...} on one line'

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class Refusal(Exception):
    """A request answered with ``ok: false``."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def answer(self) -> dict[str, Any]:
        return refusal(self.code, self.message)


def refusal(code: Code, message: str) -> dict[str, Any]:
    return {"ok": False, "code": code, "error": message}


def nesting(line: bytes) -> int:
    """How deep arrays and objects nest in ``line``, counting brackets outside strings: never
    less than the depth ``json.loads`` would recurse to, whatever the line holds. (Up to the
    first byte the JSON scanner rejects, its strings are exactly these; after it, it stops.)"""
    outside = b"".join(_ESCAPE.sub(b"", line).split(b'"')[::2])
    brackets = outside.translate(None, _NOT_BRACKET)
    if len(brackets) <= MAX_DEPTH:
        return len(brackets)  # an upper bound is enough, and this is most requests
    return max(accumulate(map(_STEP.__getitem__, brackets)))


def parse(line: bytes) -> dict[str, Any]:
    """The request object on ``line``; ``Refusal`` (invalid) for anything else."""
    if nesting(line) > MAX_DEPTH:
        raise Refusal(INVALID, f"request nested deeper than {MAX_DEPTH} levels")
    try:
        request = json.loads(line.decode("utf-8"))  # UnicodeDecodeError is a ValueError
    except (ValueError, RecursionError):
        request = None
    if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
        raise Refusal(INVALID, NOT_A_REQUEST)
    return request


def encode(answer: Mapping[str, Any]) -> bytes:
    """One answer line. Strings are JSON-escaped, so nothing a client sent can end it early."""
    return json.dumps(answer, ensure_ascii=False, default=str).encode() + b"\n"
