"""The uplink: everything between the gateway and the platform's broker.

``link`` is the MQTT connection (paho on the daemon's event loop); ``topics`` the contract's
topics and payloads; ``publisher`` what goes out when; ``outbox`` (with ``segments`` and
``outbox_store``) keeps what the broker has not acknowledged, on the SD card when it must. It
knows MQTT and bytes, nothing of devices.
"""
