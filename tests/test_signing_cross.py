"""The same vectors signed in other languages, as a platform not written in Python would:
an independent JavaScript signer (tests/signers/sign.mjs, Node's built-in crypto only, written
from docs/contract/signing.md) reproduces every vector and refuses every ``must_refuse`` entry;
the messages it publishes pass the Python gate; it agrees with the Python signer on hundreds of
random commands written unlike their canonical form; and a POSIX shell + openssl signer
(tests/signers/sign.sh) reproduces the simplest vectors.
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gatewayd.commands import signing
from tests.signers import make_vectors
from tests.test_signing_vectors import REFUSALS, VECTORS, VECTORS_FILE, verify

SIGNERS = Path(__file__).resolve().parent / "signers"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None, reason="node is not installed (scripts/debian-deps.sh installs nodejs)"
)


# -- the Node signer ----------------------------------------------------------------------------


def node(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(SIGNERS / "sign.mjs"), *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
        check=False,
    )


def lines(stdout: str) -> list[str]:
    """One message a line. Not str.splitlines: that also splits at U+0085, U+2028 and U+2029,
    which canonical forms carry as themselves."""
    assert stdout.endswith("\n")
    return stdout.split("\n")[:-1]


@needs_node
def test_node_signer_reproduces_every_vector() -> None:
    run = node("vectors", str(VECTORS_FILE))
    assert run.returncode == 0, run.stdout + run.stderr
    out = lines(run.stdout)
    assert out[: len(VECTORS)] == [f"ok {v['name']}" for v in VECTORS]
    refused = out[len(VECTORS) :]
    assert [line.split(" (")[0] for line in refused] == [
        f"ok refused {r['name']}" for r in REFUSALS
    ]


@needs_node
def test_messages_the_node_signer_publishes_pass_the_gate(tmp_path: Path) -> None:
    batch = [[v["key"], v["command"]] for v in VECTORS]
    run = node("sign", stdin=json.dumps(batch, ensure_ascii=False))
    assert run.returncode == 0, run.stderr
    published = lines(run.stdout)
    assert len(published) == len(VECTORS)
    for n, (vector, message) in enumerate(zip(VECTORS, published, strict=True)):
        assert message == vector["canonical"][:-1] + f',"sig":"{vector["sig"]}"}}'
        assert verify(tmp_path, vector, message, n).id == vector["command"]["id"]


# Random commands, written the way another platform might (every float with 17 digits, every
# string with \u escapes, members in any order), signed by both signers.

POOL = [*'aZ09 _-/"\\é中ｚ', "\x00", "\x1f", "\x7f", "\x85", "\u2028", "\u2029", "\ufeff"]


def _text(rng: random.Random) -> str:
    def one() -> str:
        roll = rng.random()
        if roll < 0.6:
            return rng.choice(POOL)
        if roll < 0.8:
            return chr(rng.randint(0x10000, 0x10FFFF))  # astral: sorts apart in UTF-16
        return chr(rng.choice([rng.randint(0x20, 0xD7FF), rng.randint(0xE000, 0xFFFF)]))

    return "".join(one() for _ in range(rng.randint(0, 6)))


def _number(rng: random.Random) -> int | float:
    roll = rng.random()
    if roll < 0.3:
        return rng.choice([0, -1, 2**53 + 1, -(10**30)]) + rng.randint(-1000, 1000) * rng.choice(
            [1, 10**20]
        )
    if roll < 0.5:
        return round(rng.uniform(-1e6, 1e6), rng.randint(0, 6))
    while True:
        (x,) = struct.unpack("<d", rng.randbytes(8))  # any binary64: all exponents, subnormals
        if math.isfinite(x):
            return x


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth < 3 and roll < 0.25:
        return {_text(rng): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and roll < 0.4:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if roll < 0.7:
        return _number(rng)
    return rng.choice([True, False, None, _text(rng), _text(rng)])


def _write(v: Any, rng: random.Random) -> str:
    """JSON text unlike the canonical form: floats with 17 digits, strings all-ASCII escaped,
    members shuffled, spaces around separators."""
    if isinstance(v, float):
        return format(v, ".16e")
    if isinstance(v, dict):
        items = list(v.items())
        rng.shuffle(items)
        return "{ " + " , ".join(f"{json.dumps(k)} : {_write(x, rng)}" for k, x in items) + " }"
    if isinstance(v, list):
        return "[ " + " , ".join(_write(x, rng) for x in v) + " ]"
    return json.dumps(v)


def random_commands(seed: int, n: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        iat = rng.choice([make_vectors.T, make_vectors.T + rng.random(), float(make_vectors.T)])
        cmd = {"id": f"r{i}", "device": "test-probe", "action": "echo", "iat": iat, "exp": iat + 30}
        cmd["args"] = {_text(rng): _value(rng, 1) for _ in range(rng.randint(0, 5))}
        if rng.random() < 0.3:
            cmd[_text(rng) or "extra"] = _value(rng, 1)
        out.append(cmd)
    return out


def test_canonical_form_is_a_fixed_point_on_random_commands() -> None:
    for cmd in random_commands(seed=7, n=300):
        form = signing.canonical(cmd)
        assert signing.canonical(json.loads(form)) == form


@needs_node
def test_node_and_python_sign_random_commands_alike() -> None:
    rng = random.Random(11)
    commands = random_commands(seed=11, n=400)
    keys = [rng.randbytes(32).hex() for _ in commands]
    batch = (
        "["
        + ",".join(f'["{k}",{_write(c, rng)}]' for k, c in zip(keys, commands, strict=True))
        + "]"
    )
    run = node("sign", stdin=batch)
    assert run.returncode == 0, run.stderr
    published = lines(run.stdout)
    assert len(published) == len(commands)
    for key, cmd, message in zip(keys, commands, published, strict=True):
        want = signing.canonical(cmd).decode()
        assert message[: len(want) - 1] == want[:-1], cmd
        assert json.loads(message)["sig"] == signing.signature(bytes.fromhex(key), cmd), cmd


# -- the shell + openssl signer -----------------------------------------------------------------

SAFE = re.compile(r"[A-Za-z0-9._:@-]*")


def shell_args(vector: dict[str, Any]) -> list[str] | None:
    """sign.sh's arguments for a vector simple enough for it, else None."""
    cmd = vector["command"]
    if set(cmd) - {"args"} != {"id", "device", "action", "user", "iat", "exp"}:
        return None
    strings = [cmd[k] for k in ("id", "device", "action", "user")]
    args = cmd.get("args")
    if args is not None:
        strings += [*args, *(v for v in args.values() if isinstance(v, str))]
        if not all(type(v) in (int, str) for v in args.values()):
            return None
    if not all(SAFE.fullmatch(s) for s in strings) or {type(cmd["iat"]), type(cmd["exp"])} != {int}:
        return None
    pairs = ["-"] if args == {} else [f"{k}={v}" for k, v in (args or {}).items()]
    return [vector["key"], *strings[:4], str(cmd["iat"]), str(cmd["exp"]), *pairs]


SIMPLE = [v for v in VECTORS if shell_args(v) is not None]


def test_the_shell_signer_has_vectors_to_sign() -> None:
    assert {v["name"] for v in SIMPLE} >= {"ping", "unlock", "empty-args", "key-b"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("vector", SIMPLE, ids=[v["name"] for v in SIMPLE])
def test_shell_signer_reproduces_the_simple_vectors(vector: dict[str, Any]) -> None:
    args = shell_args(vector)
    assert args is not None
    run = subprocess.run(
        ["sh", str(SIGNERS / "sign.sh"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == vector["canonical"][:-1] + f',"sig":"{vector["sig"]}"}}\n'
