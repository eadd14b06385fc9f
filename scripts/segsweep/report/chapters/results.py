"""Chapter 4, Results: the failed runs (when any), then its sections; the training budget, seed
noise, results by site and quality control of predictions only where the thesis has their
files."""

from __future__ import annotations

import pandas as pd

from segsweep.report.chapters import budget, quality, seeds, sites
from segsweep.report.chapters.final_results import final_models, visualisation
from segsweep.report.chapters.sweep_results import best_models, failed_runs, hyperparameter_effects
from segsweep.report.document import Chapter, Table
from segsweep.report.inputs import ReportInputs


def chapter(inputs: ReportInputs, all_runs: Table) -> Chapter:
    """`all_runs`: the appendix's table of every run, which this chapter cites."""
    final_ids = pd.read_csv(inputs.final, keep_default_na=False)["run_id"].astype(str).tolist()
    blocks = [
        *failed_runs(inputs, all_runs),
        *budget.sections(inputs),
        hyperparameter_effects(inputs, all_runs),
        best_models(inputs),
        *seeds.sections(inputs),
        final_models(inputs, final_ids),
        *sites.sections(inputs),
        *quality.sections(inputs),
        visualisation(inputs, final_ids),
    ]
    return Chapter("results", "4", "Results", blocks)
