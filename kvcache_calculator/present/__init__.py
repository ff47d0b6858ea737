"""Presentation: figures as Plotly dicts (:mod:`.figures`), the results and notes of a scenario
(:mod:`.report`), and the lab's long jobs in resumable steps (:mod:`.jobs`) with what it
simulates (:mod:`.lab_tasks`), draws (:mod:`.lab_figures`) and tabulates (:mod:`.lab_tables`)."""
