"""The analytic model: the characteristic-time (LRU) hit-rate model (:mod:`.model`), the fast
hit-rate table sweeps are evaluated on (:mod:`.table`), the sweeps themselves (:mod:`.sweeps`:
hit rate vs memory, sensitivity curves, tornado, heatmap) and the suggestions that follow
(:mod:`.advice`).
"""
