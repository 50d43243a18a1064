"""`make demo`: a whole emulated rental house on this machine, and a live view of what its
gateway tells the platform. Everything it starts, Ctrl-C stops."""
