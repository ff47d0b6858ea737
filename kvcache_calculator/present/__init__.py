"""Presentation: figures as Plotly dicts (:mod:`.figures`), the results and notes of a scenario
(:mod:`.report`) and the lab's long jobs (:mod:`.lab`)."""
