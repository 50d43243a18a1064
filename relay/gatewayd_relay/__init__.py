"""gatewayd-relay: who may open which door when, signed commands to the gateways, and alarms
carried to people's phones. Knows the gateway only through the MQTT contract; never imports
``gatewayd``."""

__version__ = "0.1.0"
