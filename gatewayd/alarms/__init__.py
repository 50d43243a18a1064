"""Alarms: the catalogue of types (``catalogue``) and their lifecycle's one owner (``book``).

docs/alarms.md describes the lifecycle and every type: how it clears, what the operator does.
"""

from gatewayd.alarms.book import AlarmBook, Refusal
from gatewayd.alarms.catalogue import (
    FIRE_MODE,
    OUTBOX_FULL,
    STATE_LOST,
    STORAGE_FAILED,
    AlarmSpec,
    Catalogue,
)

__all__ = [
    "FIRE_MODE",
    "OUTBOX_FULL",
    "STATE_LOST",
    "STORAGE_FAILED",
    "AlarmBook",
    "AlarmSpec",
    "Catalogue",
    "Refusal",
]
