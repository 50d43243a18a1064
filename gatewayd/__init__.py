"""gatewayd: the edge gateway that keeps rental houses safe.

The core package knows events, rules, the uplink and the command gate; it never imports a
device library (pymodbus, bleak, pyserial) at module level, so `gatewayd --help` stays fast.
"""

__version__ = "0.1.0"
