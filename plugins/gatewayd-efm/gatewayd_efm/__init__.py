"""gatewayd-efm: the EFM-4 electrical fire monitoring detector as a gatewayd device family.

A plugin package outside the core (docs: README.md here, linked from docs/electrical.md):
``family`` (what an ``electrical`` device is), ``profile`` (the register map, as data),
``codec`` (pure decoding), ``session`` (polling on the shared Modbus line), ``rules``
(latched alarms, trip on alarm), ``probe`` (scan and self-test).
"""
