"""SRB-433: the 433 MHz wireless smoke-alarm receiver on a serial port.

``codec`` turns bytes into frames and back (pure), ``profile`` turns frames into events
(device knowledge as data), ``transport`` owns the port, and ``driver`` ties them to the
gateway. Nothing here imports pyserial at module level except ``transport``, which is only
imported when a ``serial`` bus is configured.
"""
