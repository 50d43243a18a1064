"""The contract's topics and how its payloads are written (shared/contract/mqtt.md;
docs/contract/ has the JSON Schemas and the AsyncAPI document generated from the families).

``{root}`` is ``<topic_prefix>/<gateway id>``.
"""

from __future__ import annotations

import json
from typing import Any


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON. backslashreplace: a lone surrogate smuggled into a payload must not
    stop a message."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8", "backslashreplace"
    )


class Topics:
    def __init__(self, root: str) -> None:
        self.root = root
        self.status = f"{root}/status"
        self.alarms = f"{root}/alarms"
        self.devices = f"{root}/devices"
        self.cmd = f"{root}/cmd"
        self.cmd_result = f"{root}/cmd/result"
        self.metrics = f"{root}/metrics"  # [metrics] push_seconds (gatewayd/metrics/push.py)

    def event(self, device: str) -> str:
        return f"{self.root}/events/{device}"

    def state(self, device: str) -> str:
        return f"{self.root}/state/{device}"

    def telemetry(self, device: str) -> str:
        return f"{self.root}/telemetry/{device}"
