"""Short, safe probes the CLI uses on site that are not a device family's or a bus's: does the
broker take our login, is a host reachable. (A bus's and a family's own probes live in their
driver's package: ``Driver.check_online``, ``Family.identify``, ``Family.self_test``.)

Probes only read or ask; none switches a relay or unlocks a door. Each has a short timeout and
returns a result or raises ``ProbeError`` with one line for a person.
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import TYPE_CHECKING, Any

from gatewayd.errors import ProbeError

if TYPE_CHECKING:
    from gatewayd.config import BrokerUrl, MqttConfig


# -- broker --------------------------------------------------------------------------------------

#: What a refused CONNECT means for a person, by paho's name for the broker's answer.
REFUSALS = {
    "Unsupported protocol version": "the broker refused the MQTT protocol version",
    "Client identifier not valid": "the broker refused the client id",
    "Server unavailable": "the broker is unavailable",
    "Bad user name or password": "bad username or password",
    "Not authorized": "not authorized (check the username and the broker's ACL)",
}


def check_broker(mqtt: MqttConfig, broker: BrokerUrl, client_id: str, timeout: float = 5.0) -> str:
    """TCP connect, TLS handshake for mqtts, MQTT CONNECT with our credentials (paho, as the
    daemon connects), DISCONNECT, with ``broker`` (one node of ``mqtt``'s urls). Returns what
    worked; raises ProbeError with what did not and what to do."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

    from gatewayd.uplink.link import log_in

    where = broker.where
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=paho.MQTTv311,
        reconnect_on_failure=False,  # no quiet retry as MQTT 3.1: say what the broker said
    )
    client.connect_timeout = timeout
    try:
        log_in(client, mqtt)
    except (ssl.SSLError, OSError) as exc:
        raise ProbeError(
            f"TLS files: {exc}; check mqtt.ca_file, mqtt.cert_file and mqtt.key_file"
        ) from None
    answers: list[Any] = []
    client.on_connect = lambda _c, _u, _flags, reason, _props: answers.append(reason)
    try:
        _connect(client, broker, timeout)
        deadline = time.monotonic() + timeout
        while not answers:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProbeError(f"{where}: no MQTT answer in {timeout:.0f} s")
            rc = client.loop(min(left, 0.5))
            if answers:
                break
            if rc == MQTTErrorCode.MQTT_ERR_CONN_LOST:
                _plain_to_tls(broker)
                raise ProbeError(
                    f"{where} closed the connection: is it an MQTT broker? (TLS port with mqtt://?)"
                )
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise ProbeError(f"{where} did not answer like an MQTT broker")
        reason = answers[0]
        if reason.is_failure:
            name = reason.getName()
            raise ProbeError(REFUSALS.get(name, f"refused: {name} (code {reason.value})"))
        client.disconnect()
    finally:
        sock = client.socket()
        if sock is not None:
            sock.close()
    return f"login accepted{' over TLS' if mqtt.tls else ''}"


def _connect(client: Any, broker: BrokerUrl, timeout: float) -> None:
    """TCP, the TLS handshake and the CONNECT sent: each failure in a person's words."""
    where = broker.where
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except socket.gaierror:
        raise ProbeError(
            f"cannot resolve {broker.host}: check DNS and the uplink (4G/Ethernet)"
        ) from None
    except TimeoutError:
        stage = " (connecting, or in the TLS handshake)" if broker.tls else ""
        raise ProbeError(
            f"no answer from {where} in {timeout:.0f} s{stage}: check the uplink and the firewall"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ProbeError(
            f"TLS: the broker's certificate is not trusted ({exc.verify_message}); check mqtt.ca_file"
        ) from None
    except ssl.SSLError as exc:
        raise ProbeError(f"TLS handshake with {where} failed ({exc})") from None
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
        if not broker.tls:
            _plain_to_tls(broker)
            raise ProbeError(f"cannot connect to {where} ({exc.strerror or exc})") from None
        # Connected, then dropped in the handshake: a listener that does not speak TLS.
        raise ProbeError(f"TLS handshake with {where} failed ({exc})") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where} ({exc.strerror or exc})") from None


def _plain_to_tls(broker: BrokerUrl) -> None:
    """mqtt:// was dropped: when the port completes a TLS handshake, raise that diagnosis
    (a TLS listener meets plain MQTT with a reset or a silent close)."""
    if broker.tls or not speaks_tls(broker.host, broker.port):
        return
    raise ProbeError(
        f"{broker.where} speaks TLS but the config says mqtt://: "
        f'use url = "mqtts://{broker.where}" in [mqtt] (and its ca_file)'
    )


def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether ``host:port`` answers a TLS handshake (its certificate is not judged here)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        # A server that wants our certificate still spoke TLS to say so.
        return "CERTIFICATE" in str(exc).upper() or "ALERT" in str(exc).upper()
    except OSError:
        return False


# -- network ---------------------------------------------------------------------------------------


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        raise ProbeError("no answer") from None
    except OSError as exc:
        raise ProbeError(exc.strerror or str(exc)) from None


__all__ = ["ProbeError", "check_broker", "tcp_reachable"]
