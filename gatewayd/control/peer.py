"""Who is at the other end of the control socket, as the kernel says (SO_PEERCRED), never as
the client says.

The OS account of the peer is what the gateway records as having acknowledged an alarm or
reset fire mode. A name the client sends is kept only as a ``note`` beside it, after every
character that could end or rewrite a log line (control characters, ANSI escapes, Unicode line
separators and direction overrides) is taken out. Nothing here does I/O beyond the socket
option, ``/proc/<pid>/status`` and the account database.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gatewayd.control.wire import INVALID, Refusal

NOTE_MAX = 64  # characters of a client's note that are kept

# Categories that can break or forge a log line: Cc (controls: newline, ESC, DEL, C1), Cf
# (format: direction overrides, zero-width), Cs/Co/Cn (surrogates, private, unassigned),
# Zl/Zp (U+2028/U+2029, which some viewers take for line ends).
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


@dataclass(frozen=True)
class Peer:
    """A client of the control socket: its process, its OS account, and the note it gave."""

    pid: int
    uid: int
    user: str  # the OS account name of uid, or "uid<N>" when it has none
    note: str | None = None


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end (Linux SO_PEERCRED)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def account(uid: int) -> str:
    """The account name of ``uid``; ``uid<N>`` for a uid the account database does not know."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid{uid}"


def _groups_of(pid: int, uid: int, gid: int) -> set[int]:
    """The peer's groups: from /proc (what the process really has), else the group database."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Groups:"):
                    return {gid, *(int(g) for g in line.split()[1:])}
    except (OSError, ValueError):
        pass
    groups = {gid}
    with contextlib.suppress(KeyError):
        name = pwd.getpwuid(uid).pw_name
        groups.update(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    return groups


def allowed(pid: int, uid: int, gid: int, socket_gid: int) -> bool:
    """Root, the daemon's own user and members of the socket's group may use the socket."""
    if uid in (0, os.getuid()):
        return True
    return socket_gid in _groups_of(pid, uid, gid)


def clean_note(text: str) -> str | None:
    """``text`` made safe to log on one line: every unsafe character becomes a space, runs of
    whitespace one space, at most ``NOTE_MAX`` characters; None when nothing is left."""
    kept = "".join(" " if unicodedata.category(c) in _UNSAFE else c for c in text[: NOTE_MAX * 4])
    note = " ".join(kept.split())[:NOTE_MAX].rstrip()
    return note or None


def note_of(request: Mapping[str, Any]) -> str | None:
    """The note a request carries (``note``, else the older CLI's ``user``), cleaned;
    ``Refusal`` (invalid) when it is there but not a string."""
    for key in ("note", "user"):
        value = request.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise Refusal(INVALID, f"{key} must be a string")
        return clean_note(value)
    return None
