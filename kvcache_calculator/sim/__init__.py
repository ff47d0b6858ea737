"""Simulation: one family of eviction policies (:mod:`.policies`) and the discrete-event
simulator of multi-turn conversations (:mod:`.simulate`)."""
