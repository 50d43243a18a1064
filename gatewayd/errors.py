"""The one exception root and its structured subclasses.

Library and OS errors are converted into these once, at the boundary that met them; retry
policy keys off the type (``TransientError`` is retried, the rest are not), never off text.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Root of every error gatewayd raises on purpose."""


class ConfigError(GatewayError):
    """A configuration file is wrong: names the file, the key path and what was expected."""

    def __init__(self, file: str, path: str, expected: str, got: object = None) -> None:
        self.file = file
        self.path = path
        self.expected = expected
        self.got = got
        where = f"{file}: {path}" if path else file
        text = f"{where}: {expected}"
        if got is not None:
            text += f", got {show_value(got)}"
        super().__init__(text)


class SecretFileError(GatewayError):
    """A secret file is missing, malformed, or readable by others."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        super().__init__(f"{_shown_path(path)}: {problem}")


class DeviceError(GatewayError):
    """A device refused or failed an operation; ``code`` is machine-readable."""

    def __init__(self, device: str, code: str, detail: str = "") -> None:
        self.device = device
        self.code = code
        self.detail = detail
        super().__init__(f"{device}: {code}" + (f" ({detail})" if detail else ""))


class InvalidArgument(DeviceError):
    """An argument only the device can judge is out of its range (port 13 of a 12-port pile):
    the command's fault, not the device's; a remote command gets ``invalid``."""


class TransientError(GatewayError):
    """A failure worth retrying: a timeout, a lost link, a port that vanished."""

    def __init__(self, where: str, detail: str = "") -> None:
        self.where = where
        self.detail = detail
        super().__init__(f"{where}: {detail}" if detail else where)


class DeviceTimeout(TransientError):
    """A device did not answer in time."""


class StorageFailed(GatewayError):
    """Something that must be on the SD card before the gateway may act could not be written
    there (a read-only or full card). Commands it concerns are refused: ``storage_failed``."""

    def __init__(self, store: str, detail: str) -> None:
        self.store = store
        self.detail = detail
        super().__init__(f"{store}: {detail}")


class ProbeError(GatewayError):
    """A probe on site (is the receiver on this port, a pile at this id, the broker there?)
    could not say yes: one line of why, for a person."""


class DriverMissing(ProbeError):
    """The driver a probe needs is not installed (yet)."""


class PluginError(GatewayError):
    """A driver or rule plugin could not be loaded."""


def _shown_path(path: str) -> str:
    """A key pasted where its file's path belongs must not be echoed to a terminal or log,
    also once it was taken as a file name in the config's folder (a relative path)."""
    text = path.strip()
    name = text.rsplit("/", 1)[-1]
    if len(name) >= 32 and all(c in "0123456789abcdefABCDEF" for c in name):
        return "(a value that looks like a key, not a file path: give the path of a 0600 file)"
    return path


def show_value(value: object) -> str:
    """A config value as an error shows it: strings quoted, tables and lists named."""
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
