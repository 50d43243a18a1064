"""Reading secret files: keys and passwords live in files only their owner can read.

Never log what this module returns; errors name the file, never its content.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from gatewayd.errors import SecretFileError
from gatewayd.schema import Field


def read_secret(path: str) -> str:
    """The file's text, stripped; refused when group or others can read or write it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SecretFileError(path, "no such file") from None
    except OSError as exc:
        raise SecretFileError(path, f"cannot read it ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SecretFileError(path, "not a regular file")
    if st.st_mode & 0o077:
        raise SecretFileError(
            path,
            f"readable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"fix it with: chmod 600 {path}",
        )
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(path, f"cannot read it ({exc})") from None


def read_hex_key(path: str, nbytes: int) -> bytes:
    """A key written as ``2*nbytes`` hex digits (the installer's commissioning format)."""
    text = read_secret(path)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise SecretFileError(path, f"expected {2 * nbytes} hex digits") from None
    if len(key) != nbytes:
        raise SecretFileError(path, f"expected {2 * nbytes} hex digits, got {len(text)}")
    return key


def write_secret(path: str, text: str) -> None:
    """Create (or replace) a secret file with mode 0600 from the first byte on."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Secret:
    """A secret read from a 0600 file. Its repr shows the path only, so it never leaks into
    logs or tracebacks."""

    path: str
    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Secret({self.path!r})"


def SecretFile(nbytes: int | None = None, default: Any = None, doc: str = "") -> Field:
    """A path to a mode-0600 file; the value is its content (hex of ``nbytes`` if given)."""

    def convert(v: Any) -> Secret:
        if not isinstance(v, str) or not v:
            raise ValueError
        data = read_hex_key(v, nbytes) if nbytes else read_secret(v).encode()
        return Secret(v, data)

    what = f"a mode-0600 file with {2 * nbytes} hex digits" if nbytes else "a mode-0600 file"
    return Field(what, convert, default, doc, path=True, json={"type": "string", "minLength": 1})
