"""An EFM-4 that answers from a recorded register dump instead of its own clock.

The dump is the one plugins/gatewayd-efm/tests/fixtures/efm4/*.json hold per snapshot:
``input``, ``holding`` and ``coils``, each a mapping of start address (a string, as JSON keys
are) to values. Served by the EBC emulator's line like any slave, so a real master reads
exactly the recorded registers over Modbus TCP or RTU. The registers stay as recorded: no
delay runs, no latch moves, the self-test never ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gatewayd_efm_stubs.efm4 import Efm4

Dump = Mapping[str, Mapping[str, Sequence[int | bool]]]


def _flat(blocks: Mapping[str, Sequence[int | bool]]) -> list[int]:
    at = {int(start) + i: int(v) for start, values in blocks.items() for i, v in enumerate(values)}
    return [at[a] for a in range(len(at))]


class ReplayedEfm4(Efm4):
    def __init__(self, dump: Dump, unit: int = 1) -> None:
        super().__init__(unit=unit)
        self.recorded_inputs = _flat(dump["input"])
        self.recorded_holding = _flat(dump["holding"])
        self.trip_output = bool(_flat(dump["coils"])[0])

    def advance(self, seconds: float) -> None:
        pass  # the dump is what it is

    def inputs(self) -> list[int]:
        return list(self.recorded_inputs)

    def holding(self) -> list[int]:
        return list(self.recorded_holding)
