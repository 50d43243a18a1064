"""`gatewayd pair KIND`: pair wireless devices with the gateway. Each subcommand is a device
family's (``Family.commands``): the family knows its receiver and what pairing means for it.
"""

from __future__ import annotations

import click

from gatewayd.cli.plugged import PluggedGroup


@click.group(cls=PluggedGroup)
def pair() -> None:
    """Pair wireless devices with the gateway: one subcommand per device family that pairs
    (listed below); `gatewayd pair KIND --help` says how, with examples."""
