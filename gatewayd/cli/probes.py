"""Short, safe probes the CLI uses on site that are not a device family's or a bus's: does the
broker take our login, is a host reachable. (A bus's and a family's own probes live in their
driver's package: ``Driver.check_online``, ``Family.identify``, ``Family.self_test``.)

Probes only read or ask; none switches a relay or unlocks a door. Each has a short timeout and
returns a result or raises ``ProbeError`` with one line for a person.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING

from gatewayd.errors import ProbeError

if TYPE_CHECKING:
    from gatewayd.config import MqttConfig


# -- broker --------------------------------------------------------------------------------------

CONNACK_CODES = {
    1: "the broker refused the MQTT protocol version",
    2: "the broker refused the client id",
    3: "the broker is unavailable",
    4: "bad username or password",
    5: "not authorized (check the username and the broker's ACL)",
}


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _connect_packet(client_id: str, username: str | None, password: bytes | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += len(password).to_bytes(2, "big") + password
    body = b"\x00\x04MQTT\x04" + bytes((flags,)) + (10).to_bytes(2, "big") + payload
    length, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        length += bytes((byte | (0x80 if n else 0),))
        if not n:
            break
    return b"\x10" + length + body


def check_broker(mqtt: MqttConfig, client_id: str, timeout: float = 5.0) -> str:
    """TCP connect, TLS handshake for mqtts, MQTT CONNECT with our credentials, DISCONNECT.
    Returns what worked; raises ProbeError with what did not and what to do."""
    where = f"{mqtt.host}:{mqtt.port}"
    try:
        raw = socket.create_connection((mqtt.host, mqtt.port), timeout=timeout)
    except socket.gaierror:
        raise ProbeError(
            f"cannot resolve {mqtt.host}: check DNS and the uplink (4G/Ethernet)"
        ) from None
    except TimeoutError:
        raise ProbeError(
            f"no answer from {where} in {timeout:.0f} s: check the uplink and the firewall"
        ) from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where} ({exc.strerror or exc})") from None
    sock: socket.socket = raw
    try:
        sock.settimeout(timeout)
        if mqtt.tls:
            ctx = ssl.create_default_context(cafile=mqtt.ca_file)
            try:
                if mqtt.cert_file:
                    ctx.load_cert_chain(mqtt.cert_file, mqtt.key_file)
                sock = ctx.wrap_socket(raw, server_hostname=mqtt.host)
            except ssl.SSLCertVerificationError as exc:
                raise ProbeError(
                    f"TLS: the broker's certificate is not trusted ({exc.verify_message}); check mqtt.ca_file"
                ) from None
            except (ssl.SSLError, OSError) as exc:
                raise ProbeError(f"TLS handshake with {where} failed ({exc})") from None
        password = mqtt.password.value if mqtt.password else None
        sock.sendall(_connect_packet(client_id, mqtt.username, password))
        answer = b""
        while len(answer) < 4:
            chunk = sock.recv(4 - len(answer))
            if not chunk:
                raise ProbeError(
                    f"{where} closed the connection: is it an MQTT broker? (TLS port with mqtt://?)"
                )
            answer += chunk
        if answer[0] != 0x20:
            raise ProbeError(f"{where} did not answer like an MQTT broker")
        if answer[3]:
            raise ProbeError(CONNACK_CODES.get(answer[3], f"refused with code {answer[3]}"))
        sock.sendall(b"\xe0\x00")
    except TimeoutError:
        raise ProbeError(f"{where}: no MQTT answer in {timeout:.0f} s") from None
    except OSError as exc:
        raise ProbeError(f"{where}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    return f"login accepted{' over TLS' if mqtt.tls else ''}"


# -- network ---------------------------------------------------------------------------------------


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        raise ProbeError("no answer") from None
    except OSError as exc:
        raise ProbeError(exc.strerror or str(exc)) from None


__all__ = ["ProbeError", "check_broker", "tcp_reachable"]
