"""Modbus driver: e-bike charging piles on RS-485 (RTU) or Modbus TCP."""
