"""Child processes that end with whoever started them.

A demo whose terminal is closed, or a test run killed by a timeout, must not leave a gateway,
a relay, a broker or a D-Bus running: they keep ports, sockets and ptys, and a pty number the
next run's emulator is given again is still locked by the orphan's reopened port (pyserial's
``exclusive``), so the next gateway finds its receiver "busy". Each of these peers is started
in its own session (a Ctrl-C must reach the demo alone, which stops them in order), so the
parent's process group cannot take them down: the kernel's parent-death signal does, set by
util-linux's ``setpriv`` before it execs the command (same pid; no ``preexec_fn``, which is
unsafe in a process with threads).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Sequence

_SETPRIV = shutil.which("setpriv")


def tied_to_parent(argv: Sequence[str]) -> list[str]:
    """``argv``, run so that it gets SIGTERM when this process dies.

    Only from the main thread: the kernel sends the signal when the *thread* that forked
    ends, and a worker thread may end long before the process. Without ``setpriv`` (not
    Linux), ``argv`` unchanged."""
    if _SETPRIV is None or threading.current_thread() is not threading.main_thread():
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "TERM", "--", *argv]
