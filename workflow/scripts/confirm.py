"""Checkpoint confirm: the top settings of the sweep, which more seeds retrain (under halving
those that trained furthest first)."""

import pandas as pd

from segsweep.io.records import write_csv
from segsweep.logs import logged
from segsweep.sweep.grammar import every_run
from segsweep.sweep.seeds import seed_scores, top_settings
from segsweep.tasks import task_of

with logged(snakemake.log[0]):
    cfg, ids = snakemake.params.cfg, snakemake.params.runs
    known = every_run(cfg, snakemake.params.sweep)
    scores, _ = seed_scores(
        [known[r] for r in ids],
        dict(zip(ids, snakemake.input.selections, strict=True)),
        dict(zip(ids, snakemake.input.scored, strict=True)),
        cfg["selection"],
        task_of(cfg).choice_scorer(cfg),
    )
    higher = cfg["selection"]["higher_is_better"]
    reached = {}
    for run in known.values():
        epochs = snakemake.params.reached.get(run.configuration)
        if epochs is not None:
            reached[run.setting] = max(reached.get(run.setting, 0), epochs)
    top = top_settings(scores, snakemake.params.top, higher, reached)
    table = pd.DataFrame({"rank": range(1, len(top) + 1), "setting": top})
    write_csv(table, snakemake.output.table)
    print(table.to_string(index=False))
