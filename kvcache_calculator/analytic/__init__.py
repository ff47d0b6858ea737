"""The analytic model: the characteristic-time (LRU) hit-rate model (:mod:`.model`), the fast
table and sweeps built on it (:mod:`.sensitivity`) and the suggestions that follow (:mod:`.advice`).
"""
