"""The local control socket: how `gatewayd status`, `events`, `alarm` and `pair` reach the
running daemon without a broker. ``server`` serves it; ``session`` holds the connections
(who, how many, how long); ``wire`` is the request format and its coded refusals; ``peer``
says who is asking (SO_PEERCRED)."""

from gatewayd.control.server import (
    CALL_TIMEOUT,
    ENV_VAR,
    RUN_DIR,
    SOCKET_NAME,
    ControlServer,
    candidates,
    find_socket,
    serve,
    socket_path,
)
from gatewayd.control.session import IDLE_TIMEOUT, MAX_CLIENTS

__all__ = [
    "CALL_TIMEOUT",
    "ENV_VAR",
    "IDLE_TIMEOUT",
    "MAX_CLIENTS",
    "RUN_DIR",
    "SOCKET_NAME",
    "ControlServer",
    "candidates",
    "find_socket",
    "serve",
    "socket_path",
]
