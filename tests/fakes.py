"""Fakes of the core's faces, for driver tests that run a real driver against a real emulator
without the whole daemon. (Fakes, not mocks: they record what a driver did.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from gatewayd.model import Event


class RecordingContext:
    """A DriverContext that records events, state and telemetry, and lets a test wait."""

    def __init__(self, gateway_id: str = "gw-test") -> None:
        self.gateway_id = gateway_id
        self.log = logging.getLogger("test.driver")
        self.events: list[Event] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.telemetry: list[tuple[str, dict[str, Any]]] = []
        self._changed = asyncio.Event()

    def emit(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.states.setdefault(device, {}).update(state)
        self._changed.set()

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        self.telemetry.append((device, dict(values)))
        self._changed.set()

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    async def wait_for(self, type_: str, count: int = 1, timeout: float = 5.0) -> list[Event]:
        """Wait until at least ``count`` events of ``type_`` were emitted."""
        async with asyncio.timeout(timeout):
            while len(self.of_type(type_)) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.of_type(type_)
