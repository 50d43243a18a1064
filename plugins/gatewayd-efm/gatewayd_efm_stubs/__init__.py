"""Emulators for the EFM-4 plugin's tests and the demo. They speak the datasheet and never
import ``gatewayd_efm`` (an emulator that shares the decoder cannot catch its bugs)."""
