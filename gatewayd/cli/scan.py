"""`gatewayd scan BUS`: find the devices on a bus (a receiver on a serial port, what answers on
an RS-485 line, the locks in range). Each subcommand is a driver's (``Driver.commands``): the
installed drivers decide which buses can be scanned. Scans only ask; exit 0 when something was
found, 3 when nothing was, 130 on Ctrl-C (with what was found so far).
"""

from __future__ import annotations

import click

from gatewayd.cli.plugged import PluggedGroup


@click.group(cls=PluggedGroup)
def scan() -> None:
    """Find devices on a bus: one subcommand per kind of bus the installed drivers know
    (listed below); `gatewayd scan BUS --help` says what it asks, with examples."""
