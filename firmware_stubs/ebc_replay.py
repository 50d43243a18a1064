"""An EBC pile that answers from a recorded register dump instead of its physics.

The dump is the one tests/fixtures/ebc/*.json hold per snapshot: ``input``, ``holding`` and
``coils``, each a mapping of start address (a string, as JSON keys are) to values. Served by
``EbcEmulator`` like any pile, so a real master reads exactly the recorded registers over
Modbus TCP or RTU. Writes still act as the datasheet says on the holding registers and the
relays (coil reads answer what was last written); input registers stay as recorded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from firmware_stubs.ebc_model import ILLEGAL_ADDRESS, ModbusException, Pile

Dump = Mapping[str, Mapping[str, Sequence[int | bool]]]


def _flat(blocks: Mapping[str, Sequence[int | bool]]) -> dict[int, int]:
    return {
        int(start) + i: int(v) for start, values in blocks.items() for i, v in enumerate(values)
    }


class ReplayedPile(Pile):
    def __init__(self, dump: Dump, unit: int = 1) -> None:
        inputs = _flat(dump["input"])
        super().__init__(unit=unit, ports_n=inputs[2])
        self.recorded = inputs
        holding = _flat(dump["holding"])
        self.holding = [holding[a] for a in range(len(holding))]
        for number, closed in _flat(dump["coils"]).items():
            port = self.ports[number]
            port.relay = bool(closed)
            # A faulted port refuses to close (exception 04) until the faults are cleared.
            port.fault = inputs[16 + 8 * number + 7]

    def _step(self, dt: float) -> None:
        self.now += dt  # no physics, no trips and no fail-safe: the dump is what it is

    def input_registers(self, addr: int, count: int) -> list[int]:
        try:
            return [self.recorded[a] for a in range(addr, addr + count)]
        except KeyError:
            raise ModbusException(ILLEGAL_ADDRESS) from None
