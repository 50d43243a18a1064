"""A recording of every message under the gateway's root, as the broker delivered it: one JSON
line per message (topic, QoS, retain flag, payload). `python -m demo --record FILE` makes one;
the contract test validates each message against docs/contract/, and an integrator gets real
payloads to try a parser on.

It subscribes before the gateway starts (so nothing is missed), over MQTT 5 with QoS 2 and
retain-as-published, so what it writes is the QoS and retain flag the publisher used.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions


class Recorder:
    def __init__(self, port: int, root: str, path: Path) -> None:
        self._out = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="demo-recorder", protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        options = SubscribeOptions(qos=2, retainAsPublished=True)
        self.client.subscribe(f"{root}/#", options=options)
        if not subscribed.wait(10):
            self.close()
            raise RuntimeError("the recorder could not subscribe")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
        with self._lock:
            self._out.close()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        line: dict[str, Any] = {"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain)}
        try:
            line["payload"] = msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            line["payload_hex"] = msg.payload.hex()
        with self._lock:
            if not self._out.closed:
                self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
                self._out.flush()
