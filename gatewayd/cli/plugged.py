"""Command groups whose subcommands the installed drivers and device families bring: `gatewayd
scan modbus` is the modbus driver's, `gatewayd pair smoke` the smoke family's. Each declares
them in ``commands`` (``gatewayd.driver.Driver``, ``gatewayd.family.Family``), so a plugin's
command needs no edit here; its module is imported only when the command runs or a help lists
it. Nothing here names a bus or a family.
"""

from __future__ import annotations

import click

from gatewayd.errors import PluginError


class PluggedGroup(click.Group):
    """A group listing the subcommands its name's plugins declare (``plugins.commands``)."""

    def _declared(self) -> dict[str, str]:
        from gatewayd import plugins

        return plugins.commands(str(self.name))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._declared()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        value = self._declared().get(cmd_name)
        if value is None:
            return super().get_command(ctx, cmd_name)
        from gatewayd import plugins

        where = f"`gatewayd {self.name} {cmd_name}` ({value})"
        try:
            command = plugins.resolve(value)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"{where} cannot be loaded: {exc}") from exc
        if not isinstance(command, click.Command):
            raise PluginError(f"{where} is not a click command")
        return command
