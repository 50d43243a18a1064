"""The `ble` driver: DL-B2 entrance locks over Bluetooth LE (transport: bleak; codec:
`protocol`; device knowledge: `profile`; one link per lock: `link`; the bus: `driver`)."""
