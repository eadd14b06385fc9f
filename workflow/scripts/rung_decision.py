"""Checkpoint rung_decision: which configurations a rung of successive halving promotes."""

import json
from pathlib import Path

from segsweep import layout as L
from segsweep.logs import logged
from segsweep.sweep.budget import write_decision
from segsweep.sweep.grammar import every_run
from segsweep.tasks import task_of


def trained_further(runs, epochs, above):
    """The configurations of `runs` that trained past the rung before this decision: a run
    with the next rung's index, or a whole run longer than the rung (the run folders are read:
    see budget.smk)."""
    further = set()
    for run in runs:
        index = Path(L.path(L.RUN_INDEX, run=run.run_id))
        if (
            above is not None
            and Path(L.path(L.RUNG_INDEX, run=run.run_id, epochs=str(above))).is_file()
        ):
            further.add(run.configuration)
        elif index.is_file():
            record = json.loads(index.read_text())
            ended = record.get("epochs_trained", run.params["epochs"])
            if record.get("status") != "failed" and ended > epochs:
                further.add(run.configuration)
    return further


with logged(snakemake.log[0]):
    cfg, budget, rungs = snakemake.params.cfg, snakemake.params.budget, snakemake.params.rungs
    known = every_run(cfg, snakemake.params.sweep)
    runs = [known[r] for r in snakemake.params.runs]
    epochs = int(snakemake.wildcards.epochs)
    k = rungs.index(epochs)
    above = rungs[k + 1] if k + 2 < len(rungs) else None
    write_decision(
        runs,
        dict(zip(snakemake.params.runs, snakemake.input.selections, strict=True)),
        dict(zip(snakemake.params.runs, snakemake.input.scored, strict=True)),
        cfg["selection"],
        budget,
        k + 1,
        epochs,
        rungs[k + 1],
        snakemake.output.decision,
        task_of(cfg).choice_scorer(cfg),
        trained_further(runs, epochs, above),
    )
