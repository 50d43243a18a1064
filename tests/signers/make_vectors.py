"""Writes docs/contract/signing-vectors.json: the command-signing test vectors.

The inputs are chosen here, by hand, one per rule of docs/contract/signing.md; the outputs
(canonical bytes and signatures) come from the Python signer, ``gatewayd.commands.signing``. The Node
signer (tests/signers/sign.mjs), written from the spec alone, must reproduce every one of them,
and tests/test_signing_vectors.py fails when this file is not current.

Regenerate after changing an input here (never edit the JSON by hand):

    .venv/bin/python -m tests.signers.make_vectors
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

from gatewayd.commands import signing

OUT = Path(__file__).resolve().parents[2] / "docs" / "contract" / "signing-vectors.json"

KEY_A = bytes(range(32))  # 000102…1f: easy to type when checking by hand
KEY_B = hashlib.sha256(b"gatewayd signing vector key B").digest()
GW = "xz-liushu-017"
PROBE = "test-probe"  # with action "echo": no real device; lets the vectors carry any JSON in args
T = 1763798400  # 2025-11-22 08:00 UTC
SIG_SLOT = "{sig}"  # where a payload's signature goes once it is known


def _cmd(cid: str, device: str, action: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": cid, "device": device, "action": action}
    fields.setdefault("iat", T)
    fields.setdefault("exp", T + 30)
    return {**base, **fields}


# (name, note, key, command without sig). Every command is one the gateway accepts.
COMMANDS: list[tuple[str, str, bytes, dict[str, Any]]] = [
    (
        "ping",
        "The plainest command: no `args` member at all. An absent member is not signed as "
        "`{}` (compare `empty-args`).",
        KEY_A,
        _cmd("v01-ping", GW, "ping", user="platform"),
    ),
    (
        "unlock",
        "The contract's example: an unlock with one integer argument.",
        KEY_A,
        _cmd("c0f3a9d2", "door-main", "unlock", args={"seconds": 5}, user="tenant-302"),
    ),
    (
        "empty-args",
        "`args` present and empty, and `user` the empty string: both are signed as written.",
        KEY_A,
        _cmd("v03-fire-reset", GW, "fire_reset", args={}, user=""),
    ),
    (
        "key-b",
        "Another key (32 bytes, used as raw bytes, never as its hex text).",
        KEY_B,
        _cmd("v04-port-on", "pile-1", "port_on", args={"port": 2}, user="landlord@xz-017"),
    ),
    (
        "chinese",
        "Text outside ASCII is written as itself in UTF-8, never as \\u escapes; a member the "
        "gateway does not know (`note`) is signed like any other.",
        KEY_A,
        _cmd(
            "v05-ack",
            GW,
            "ack_alarm",
            args={"alarm": "烟感-301-报警"},
            user="tenant-302",
            note="三楼302室，租户已确认：做饭误报",
        ),
    ),
    (
        "escapes",
        'Only " and \\ and U+0000..U+001F are escaped: \\b \\t \\n \\f \\r by name, the rest as '
        "\\u00xx with lower-case hex. DEL, C1 controls, U+2028/U+2029, the BOM character and / "
        "are written as themselves.",
        KEY_A,
        _cmd(
            "v06-escapes",
            PROBE,
            "echo",
            args={
                "quoted": 'He said "hi" \\o/ C:\\temp',
                "controls": "\x00\x01\x08\t\n\x0b\x0c\r\x1b\x1f",
                "as_is": "\x7f\x85\xa0\u2028\u2029\ufeff/<>&'",
            },
        ),
    ),
    (
        "key-order",
        "Member names are sorted by Unicode code point (= by their UTF-8 bytes) at every depth: "
        "'' < 'B' < '_' < 'a' < 'a b' < 'aa' < 'é' < 'ｚ' (U+FF5A) < '𝄞' (U+1D11E) < '😀' "
        "(U+1F600). Sorting by UTF-16 code units (JavaScript's default sort) puts the last two "
        "before 'ｚ' and is wrong. A `sig` below the top level is signed like any other member.",
        KEY_A,
        _cmd(
            "v07-order",
            PROBE,
            "echo",
            args={
                "😀": 10,
                "𝄞": 9,
                "ｚ": 8,
                "é": 7,
                "aa": 6,
                "a b": 5,
                "a": 4,
                "_": 3,
                "B": 2,
                "": 1,
                "sig": "a nested sig is signed",
                "nested": {"y": {"k": 1, "j": 2}, "x": [{"b": 1, "a": 2}, {"😀": 0, "ｚ": 0}]},
            },
        ),
    ),
    (
        "fractional-times",
        "`iat`/`exp` written with a fraction are binary64 numbers, written back in their "
        "shortest round-trip form.",
        KEY_A,
        _cmd("v08-frac", GW, "ping", args={}, iat=1763798400.1, exp=1763798430.125),
    ),
    (
        "integral-float-times",
        "A time written with a fraction stays a fraction even when it is whole: 1763798400.0 "
        "is signed as `1763798400.0`, not `1763798400` (what Python's time.time()-based "
        "signers send).",
        KEY_A,
        _cmd("v09-float", GW, "ping", args={}, iat=float(T), exp=float(T + 30)),
    ),
    (
        "large-integers",
        "Integers (written without fraction or exponent) are exact at any size: never through "
        "a binary64, never in exponent form.",
        KEY_A,
        _cmd(
            "v10-ints",
            PROBE,
            "echo",
            args={
                "small": [0, -1, 7, 2**31, -(2**31) - 1],
                "beyond_double": [2**53, 2**53 + 1, 2**64, -(10**30) - 7, 10**40 + 1],
            },
        ),
    ),
    (
        "floats",
        "Numbers with a fraction or exponent, in their canonical form: plain notation for "
        "1e-4 <= |x| < 1e16 with at least one digit after the point, otherwise "
        "d[.ddd]e±XX with at least two exponent digits.",
        KEY_A,
        _cmd(
            "v11-floats",
            PROBE,
            "echo",
            args={
                "plain": [0.0, -0.0, 0.1, 0.30000000000000004, 100.0, 2.5, -1763798400.5],
                "edges": [0.0001, 1e-05, 1e15, 1e16, 9999999999999998.0, 123456789012345678.0],
                "exp": [1e21, 1e22, -2.5e-07, 1.5e300, 5e-324, 1.7976931348623157e308],
            },
        ),
    ),
    (
        "literals",
        "true, false, null, arrays (order kept), empty arrays and objects.",
        KEY_A,
        _cmd(
            "v12-literals",
            PROBE,
            "echo",
            args={
                "on": True,
                "off": False,
                "none": None,
                "list": [1, "two", [], {}, None, True, [[]]],
                "empty_list": [],
                "empty_object": {},
            },
        ),
    ),
]

# (name, note, key, the message as a platform might publish it, ``{sig}`` where its sig goes).
# Its canonical form is computed from the parsed value, not from these bytes.
PAYLOADS: list[tuple[str, str, bytes, str]] = [
    (
        "wire-forms",
        "The canonical form depends on the parsed value, not on how the message was written: "
        "spacing, member order, escapes (\\/ \\u00E9 \\u002d, a surrogate pair), 1.7637984E9 "
        "(a float: 1763798400.0), -0 (the integer 0), 1E2 (100.0), 0.50 (0.5). The received "
        "`sig` is left out.",
        KEY_A,
        '{ "exp" : 17637984300e-1,\n  "iat": 1.7637984E9, "sig": "{sig}",\r\n'
        '  "id":"v13-wire", "device":"test-probe", "action" :"echo", "user":"ops\\u002d1",\n'
        '  "args": {"zero": -0, "hundred": 1E2, "half": 0.50, "slash": "a\\/b",\n'
        '           "e": "\\u00E9", "emoji": "\\ud83d\\ude00", "tab": "\\u0009"} }',
    ),
]

# (name, note, key, message, code): messages the gateway must refuse. Where a naive signer
# (Python's json.dumps defaults) would sign them, the sig is that naive signature, so the
# refusal comes from the rule and not from a wrong signature.
REFUSALS: list[tuple[str, str, bytes, str, str]] = [
    (
        "nan",
        "NaN is not JSON and has no canonical form.",
        KEY_A,
        '{"id":"r1","device":"test-probe","action":"echo","args":{"x":NaN},'
        f'"user":"u","iat":{T},"exp":{T + 30},"sig":"{{sig}}"}}',
        "invalid",
    ),
    (
        "infinity",
        "-Infinity is not JSON.",
        KEY_A,
        '{"id":"r2","device":"test-probe","action":"echo","args":{"x":-Infinity},'
        f'"user":"u","iat":{T},"exp":{T + 30},"sig":"{{sig}}"}}',
        "invalid",
    ),
    (
        "float-overflow",
        "1e400 is beyond binary64: no finite value, no canonical form.",
        KEY_A,
        '{"id":"r3","device":"test-probe","action":"echo","args":{"x":1e400},'
        f'"user":"u","iat":{T},"exp":{T + 30},"sig":"{{sig}}"}}',
        "invalid",
    ),
    (
        "duplicate-name",
        "A name twice in one object: readers disagree on which one counts, so none does.",
        KEY_A,
        '{"id":"r4","device":"door-main","action":"unlock","args":{"seconds":5},'
        f'"user":"u","iat":{T},"exp":{T + 30},"device":"door-back","sig":"{{sig}}"}}',
        "invalid",
    ),
    (
        "duplicate-nested-name",
        "Names must be unique at every depth.",
        KEY_A,
        '{"id":"r5","device":"door-main","action":"unlock","args":{"seconds":5,"seconds":30},'
        f'"user":"u","iat":{T},"exp":{T + 30},"sig":"{{sig}}"}}',
        "invalid",
    ),
    (
        "lone-surrogate",
        "\\ud800 alone is no Unicode character: the string has no UTF-8 form, so nobody can "
        "have signed it.",
        KEY_A,
        '{"id":"r6","device":"test-probe","action":"echo","args":{"x":"\\ud800"},'
        f'"user":"u","iat":{T},"exp":{T + 30},"sig":"{{sig}}"}}',
        "bad_signature",
    ),
]


def _vector(name: str, note: str, key: bytes, cmd: dict[str, Any]) -> dict[str, Any]:
    canonical = signing.canonical(cmd)
    return {
        "name": name,
        "note": note,
        "key": key.hex(),
        "command": cmd,
        "canonical": canonical.decode(),
        "canonical_hex": canonical.hex(),
        "sig": signing.signature(key, cmd),
    }


def _naive_sig(key: bytes, message: str) -> str:
    """What ``json.dumps`` with its defaults would sign: last duplicate wins, NaN allowed."""
    body = {k: v for k, v in json.loads(message).items() if k != "sig"}
    try:
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    except UnicodeEncodeError:  # a lone surrogate: there is nothing to sign
        return "0" * 64


def build() -> dict[str, Any]:
    vectors = [_vector(*entry) for entry in COMMANDS]
    for name, note, key, template in PAYLOADS:
        parsed = json.loads(template.replace(SIG_SLOT, "0" * 64))
        cmd = {k: v for k, v in parsed.items() if k != "sig"}
        vector = _vector(name, note, key, cmd)
        vector["payload"] = template.replace(SIG_SLOT, vector["sig"])
        vectors.append(vector)
    refusals = []
    for name, note, key, template, code in REFUSALS:
        message = template.replace(SIG_SLOT, "0" * 64)
        message = template.replace(SIG_SLOT, _naive_sig(key, message))
        refusals.append({"name": name, "note": note, "key": key.hex(), "payload": message})
        refusals[-1]["code"] = code
    return {
        "about": "Test vectors for gatewayd command signing. Normative text: "
        "docs/contract/signing.md. `canonical` is the canonical form as a string, "
        "`canonical_hex` the exact bytes that are HMAC'd, `sig` HMAC-SHA256(key, those bytes) in "
        "lower-case hex. `payload`, where present, is the message as received (sig included). "
        "Device `test-probe` with action `echo` exists only in the tests, to carry any JSON in "
        "args. `must_refuse`: messages a gateway refuses, with the result code.",
        "regenerate": ".venv/bin/python -m tests.signers.make_vectors",
        "vectors": vectors,
        "must_refuse": refusals,
    }


def render() -> str:
    return json.dumps(build(), ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
