"""The soak's fault schedule (see bench/soak.py): each cycle restarts the broker, unplugs the
smoke receiver, silences a pile, takes a lock out of range and runs a fire episode, and each
fault lasts until the gateway is seen to be back.

A mixin of ``Soak``: it drives the soak's own peers (``house``, ``broker``, ``platform``) and
records into its lists (``faults``, ``errors``, ``expected``); see ``Soak.__init__``.
"""

from __future__ import annotations

import time
from typing import Any

from bench.soak_peers import GW


class FaultSchedule:
    def faults_thread(self) -> None:
        """Every planned cycle runs whole, late or not: the run waits for them."""
        c = self.cycle
        for n in range(max(1, int(self.seconds // c))):
            base = n * c
            steps = [
                (0.10, "broker restart", max(1.5, min(20.0, 0.05 * c)), self._broker),
                (0.30, "receiver unplugged", max(1.5, min(30.0, 0.05 * c)), self._receiver),
                (0.45, "pile-2 silent", max(2.5, min(45.0, 0.08 * c)), self._pile),
                (0.60, "door-back out of range", max(2.0, min(45.0, 0.08 * c)), self._lock),
                (0.75, "fire episode", 0.0, self._fire),
            ]
            for frac, name, length, fn in steps:
                self._sleep_until(base + frac * c)
                if self.stop.is_set():
                    return
                self.faults.append((round(self.elapsed(), 1), name, length))
                try:
                    fn(length)
                except Exception as exc:
                    self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            self._sleep_until((n + 1) * c)

    def _sleep_until(self, t: float) -> None:
        while not self.stop.is_set() and self.elapsed() < t:
            self.stop.wait(min(0.5, t - self.elapsed()))

    def _down(self, what: str, seconds: float, down: Any, up: Any, back: Any = None) -> None:
        """Take a path down for ``seconds``; it counts as away until ``back()`` is true."""
        with self.gate:  # never in the middle of an injection
            self.away.add(what)
            down()
        self.stop.wait(seconds)
        up()
        if back is not None:
            self._until(back, 30, f"{what} back")
        self.away.discard(what)

    def _broker(self, seconds: float) -> None:
        p, t_down = self.platform, [0.0]

        def down() -> None:
            self.broker.stop()
            t_down[0] = time.monotonic()

        # Commands wait until the gateway is subscribed again (its status comes right after).
        # The broker keeps retained messages across the restart, so the status the platform
        # gets on resubscribing may be the old "online": only one the gateway sent counts.
        online = lambda: p.status_live_at > t_down[0] and p.state("status").get("online")  # noqa: E731
        self._down("broker", seconds, down, self.broker.start, online)

    def _receiver(self, seconds: float) -> None:
        h = self.house

        def back() -> bool:
            rx = self.platform.state(f"state/{GW}").get("receiver.smoke-rx", {})
            return bool(rx.get("online"))

        self._down(
            "rx", seconds, lambda: h.call(h.rx.unplug()), lambda: h.call(h.rx.replug()), back
        )

    def _pile(self, seconds: float) -> None:
        pile = self.house.pile("pile-2")

        async def silent(on: bool) -> None:
            pile.silent = on

        h = self.house
        back = lambda: self.platform.state("state/pile-2").get("online")  # noqa: E731
        self._down(
            "pile-2", seconds, lambda: h.call(silent(True)), lambda: h.call(silent(False)), back
        )

    def _lock(self, seconds: float) -> None:
        h, lock = self.house, self.house.locks["door-back"]
        back = lambda: self.platform.state("state/door-back").get("connected")  # noqa: E731
        self._down("door-back", seconds, lambda: h.lock_call(lock.out_of_range),
                   lambda: h.lock_call(lock.back_in_range), back)  # fmt: skip

    def _fire(self, _seconds: float) -> None:
        with self.busy:
            self.fire_episodes += 1
            self._fire_alarm()
            det = self.house.detector(self.last_detector)
            self.house.call(det.clear())
            cid = self.platform.command(GW, "fire_reset")
            res = self.platform.result(cid)
            if res is None or res["code"] != "ok":
                self.errors.append(f"fire_reset answered {res}")
            self._until(lambda: not self.platform.state("status").get("fire_mode"), 15, "reset")
            for dev, pile in self.house.piles():
                for port in range(1, pile.ports_n + 1):
                    self.platform.command(dev, "port_on", {"port": port})
