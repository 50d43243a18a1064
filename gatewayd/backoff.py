"""Capped, jittered exponential backoff for reconnects and driver restarts."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 60.0, factor: float = 2.0) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self.attempt = 0

    def next(self) -> float:
        """The next delay: exponential up to ``cap``, with "full jitter" in its upper half so
        a village of gateways that lost the same broker do not return in lockstep."""
        base = min(self.cap, self.first * self.factor**self.attempt)
        self.attempt += 1
        return base / 2 + random.uniform(0, base / 2)

    def reset(self) -> None:
        self.attempt = 0
