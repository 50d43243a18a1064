"""Device drivers: one package per bus type (transport, codec, device profile)."""
