"""Request traces: text lines from byte slices of a file (:mod:`.lines`), readers for the
Mooncake and Bailian formats (:mod:`.readers`), block-level replay (:mod:`.replay`) and fitting
a scenario to a trace."""
