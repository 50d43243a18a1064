"""The local rules: safety logic that runs at the edge, with or without the network.

Rules are synchronous and do no I/O: given an event and the gateway's world state they return
actions, alarms and derived events. That keeps them fast, deterministic and testable.
"""
