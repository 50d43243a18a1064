"""The core's test fixtures (a real mosquitto, a probe client) for the plugin's tests."""

from tests.conftest import broker, probe

__all__ = ["broker", "probe"]
