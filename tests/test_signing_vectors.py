"""Command signing as docs/contract/signing.md specifies it, against its test vectors
(docs/contract/signing-vectors.json): the file is current, the Python signer reproduces every
vector, the gate accepts every vector's message and nothing altered, and refuses every
``must_refuse`` entry with its code. The signers in other languages: test_signing_cross.py.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from drivers.ble.family import DoorFamily
from drivers.modbus.family import ChargerFamily
from gatewayd.commands import Gate, Refused, signing
from gatewayd.commands.replay import ReplayCache
from gatewayd.schema import Field
from tests.signers import make_vectors

ROOT = Path(__file__).resolve().parents[1]
VECTORS_FILE = ROOT / "docs" / "contract" / "signing-vectors.json"
SPEC = ROOT / "docs" / "contract" / "signing.md"
DATA = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
VECTORS: list[dict[str, Any]] = DATA["vectors"]
REFUSALS: list[dict[str, Any]] = DATA["must_refuse"]
by_name = pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])


def test_vectors_file_is_current() -> None:
    assert VECTORS_FILE.read_text(encoding="utf-8") == make_vectors.render(), (
        "docs/contract/signing-vectors.json is stale: run .venv/bin/python -m "
        "tests.signers.make_vectors"
    )


def test_canonical_forms_written_by_hand_from_the_spec() -> None:
    """Pins the Python signer to the spec independently of the generated file."""
    cmd = {
        "sig": "left out",
        "ｚ": '\u2028\x1f"\\\x7f',
        "😀": None,
        "b": [1.0, -0.0, 1e16, 1e-05, 0.0001, 10**20, True],
        "a": {"y": {}, "x": []},
    }
    assert (
        signing.canonical(cmd)
        == (
            '{"a":{"x":[],"y":{}},"b":[1.0,-0.0,1e+16,1e-05,0.0001,100000000000000000000,true],'
            '"ｚ":"\u2028\\u001f\\"\\\\\x7f","😀":null}'
        ).encode()
    )


def test_python_signer_refuses_what_has_no_canonical_form() -> None:
    for bad in (math.nan, math.inf, "\ud800"):
        with pytest.raises(ValueError, match=r"not JSON compliant|surrogates not allowed"):
            signing.sign(bytes(32), {"id": "x", "args": {"v": bad}})


@by_name
def test_python_signer_reproduces_the_vector(vector: dict[str, Any]) -> None:
    key, want = bytes.fromhex(vector["key"]), bytes.fromhex(vector["canonical_hex"])
    assert signing.canonical(vector["command"]) == want == vector["canonical"].encode()
    assert signing.signature(key, vector["command"]) == vector["sig"]
    assert signing.canonical(json.loads(want)) == want  # the canonical form is a fixed point
    if "payload" in vector:
        received = json.loads(vector["payload"])
        assert (signing.canonical(received), received["sig"]) == (want, vector["sig"])


# -- the gate -----------------------------------------------------------------------------------

ANY = Field("any JSON value", lambda v: v, None)


def gate(directory: Path, key: bytes, probe_args: Any = ()) -> Gate:
    """A gate for the vectors' devices; ``test-probe``/``echo`` takes whatever args it is sent."""
    devices = {
        "door-main": DoorFamily.action_schemas(),
        "pile-1": ChargerFamily.action_schemas(),
        make_vectors.PROBE: {"echo": dict.fromkeys(probe_args, ANY)},
    }
    directory.mkdir(parents=True, exist_ok=True)
    replay = ReplayCache(str(directory / "replay.log"))
    return Gate(key, make_vectors.GW, devices, replay, per_minute=30)


def messages(vector: dict[str, Any]) -> list[str]:
    signed = {**vector["command"], "sig": vector["sig"]}
    out = [json.dumps(signed, ensure_ascii=False), json.dumps(signed)]  # \u escapes or not
    return [*out, vector["payload"]] if "payload" in vector else out


def verify(tmp_path: Path, vector: dict[str, Any], message: str, n: int) -> Any:
    """The gate's verdict on ``message`` at the vector's ``iat``, with a fresh replay cache."""
    cmd = vector["command"]
    g = gate(tmp_path / str(n), bytes.fromhex(vector["key"]), cmd.get("args", {}))
    return g.verify(message.encode(), now=cmd["iat"])


@by_name
def test_gate_accepts_the_vector_and_nothing_altered(
    tmp_path: Path, vector: dict[str, Any]
) -> None:
    cmd = vector["command"]
    for n, message in enumerate(messages(vector)):
        accepted = verify(tmp_path, vector, message, n)
        assert (accepted.id, accepted.device, accepted.action) == (
            cmd["id"],
            cmd["device"],
            cmd["action"],
        )
        assert (accepted.iat, accepted.exp) == (cmd["iat"], cmd["exp"])
        assert accepted.args == cmd.get("args", {})
    accepted = verify(
        tmp_path, vector, messages(vector)[0].replace(vector["sig"], vector["sig"].upper()), 9
    )
    assert accepted.id == cmd["id"]  # hex digits in either case
    other_key = signing.signature(bytes(32), cmd)
    altered = [
        {**cmd, "sig": other_key},
        {**cmd, "sig": vector["sig"], "extra": 1},
        {**cmd, "sig": vector["sig"], "user": cmd.get("user", "") + "x"},
    ]
    for n, body in enumerate(altered, start=10):
        with pytest.raises(Refused) as err:
            verify(tmp_path, vector, json.dumps(body), n)
        assert err.value.code == "bad_signature"


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r["name"] for r in REFUSALS])
def test_gate_refuses_what_the_spec_refuses(tmp_path: Path, refusal: dict[str, Any]) -> None:
    g = gate(tmp_path, bytes.fromhex(refusal["key"]), ["x"])
    with pytest.raises(Refused) as err:
        g.verify(refusal["payload"].encode(), now=make_vectors.T)
    assert err.value.code == refusal["code"]


# -- the spec's worked examples -----------------------------------------------------------------


def test_the_specs_examples_are_the_vectors() -> None:
    spec = SPEC.read_text(encoding="utf-8")
    canonicals = {v["canonical"] for v in VECTORS}
    examples = re.findall(r"^    (\{\"action\".*\})$", spec, flags=re.M)
    assert examples, "the spec shows no canonical form"
    assert set(examples) <= canonicals
    sigs = set(re.findall(r"\b[0-9a-f]{64}\b", spec))
    assert sigs, "the spec shows no signature"
    assert sigs <= {v["sig"] for v in VECTORS} | {v["key"] for v in VECTORS}
