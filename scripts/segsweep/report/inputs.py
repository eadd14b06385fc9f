"""Every file the thesis reads, by what it is, and what differs between the tasks' theses
(`Thesis`): the workflow's report rule hands the files over as its declared inputs; run by hand,
`ReportInputs.under` (segmentation) or `segsweep.report.chapters.classification.report_inputs`
finds them in a results folder through the layout."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout, vocabulary
from segsweep.sweep.grammar import configurations, seed_noise, sweep_runs, swept_names
from segsweep.sweep.pruning import halving
from segsweep.sweep.sites import labelled_sites

Paths = Mapping[str, str | Path]


@dataclass(frozen=True)
class Thesis:
    """What differs between the theses of the two tasks; the defaults are segmentation's (its
    files `ReportInputs.under` finds), classification's is
    `segsweep.report.chapters.classification.THESIS`."""

    # the module whose `chapters(inputs, all_runs)` builds the thesis's chapters and whose
    # `final_summary(inputs, document)` the summary's paragraphs on the final models' test
    chapters: str = "segsweep.report.chapters.segmentation"
    # what a run's score is, from the selection section
    score_label: Callable[[Mapping[str, Any]], str] = vocabulary.score_label
    curve: str = "Dice"  # the training curves' validation metric, as their caption names it
    # the runs table's validation columns, as the caption of the table of all runs says them
    run_scores: str = (
        "Dice: per-patient foreground Dice of the selected checkpoint on the validation set"
    )
    # whether a row of splits.csv is a study (the summary counts its patients) or a patient
    rows_per_study: bool = False


@dataclass(frozen=True)
class ReportInputs:
    """The configuration and sweep, and the files of one workflow run the thesis shows.

    `tables` holds the analysis tables by name and `figures` the figures stage's PNGs by name,
    those the task's thesis shows (`layout.segmentation_thesis_files`,
    `classification_thesis_files`: "table_<name>", "figure_<name>"); per-subject and per-run
    files are keyed by subject or run id; `benchmarks` maps a rule to its jobs' benchmark files.
    """

    config: dict[str, Any]
    sweep: dict[str, Any]
    manifest: Path
    dropped: Path | None
    records: Paths
    splits: Path
    checks: Path | None
    centre_error: Path | None
    kept_fraction: Path | None
    n4_qc: Paths
    crop_qc: Paths
    tables: Paths
    figures: Paths
    final: Path
    outlines: Paths
    unlabelled: Paths
    provenance: Paths
    benchmarks: Mapping[str, list[str | Path]] = field(default_factory=dict)
    description: Path | None = None  # dataset.json: the layout, classes and channels read
    # the classification task's own files: "images" (images.csv), and by final model id
    # "test_per_study", "test_per_image" and "gallery"
    classification: Mapping[str, Any] = field(default_factory=dict)
    thesis: Thesis = Thesis()  # what differs between the tasks' theses
    # by final model id: the QC of its test patients (qc.csv, `layout.FINAL_QC`) and its test
    # per_patient.csv, which the section "Quality control of predictions" sets against each
    # other (`segsweep.evaluate.qc_validation`); the section shows the models with a qc.csv
    final_qc: Paths = field(default_factory=dict)
    test_per_patient: Paths = field(default_factory=dict)
    # by run id, the validation per_patient.csv of each final model's runs (out of fold with
    # folds), which the section "Results by site" groups by site with the test tables
    val_per_patient: Paths = field(default_factory=dict)

    @classmethod
    def under(
        cls,
        results: str | Path,
        config: dict[str, Any],
        sweep: dict[str, Any],
        qc_subjects: list[str],
        benchmarks: str | Path | None = None,
    ) -> ReportInputs:
        """The files of the run whose results folder is `results`, its tables and figures
        those of `layout.segmentation_thesis_files` (and, when given, the benchmark files under
        `benchmarks`, one folder per rule group); a final model's qc.csv where it is there."""

        def under(pattern: str, **wildcards: str) -> Path:
            return layout.under(results, pattern, **wildcards)

        manifest = under(layout.DATA_MANIFEST)
        subjects = pd.read_csv(manifest, dtype=str)["subject_id"].tolist()
        runs = [run.run_id for run in sweep_runs(config, sweep)]
        final = under(layout.FINAL)
        finals = pd.read_csv(final, dtype=str)["run_id"].tolist()
        external = bool(config["final"].get("external"))
        budget = halving(config, sweep)
        sites = len(labelled_sites(pd.read_csv(under(layout.SPLITS), dtype=str))) >= 2
        files = layout.segmentation_thesis_files(
            swept_names(sweep), external, seeds=seed_noise(sweep), budget=budget, sites=sites
        )
        members = configurations(sweep_runs(config, sweep))
        found = {}
        if benchmarks is not None:
            for folder in sorted(p for p in Path(benchmarks).glob("*") if p.is_dir()):
                found[folder.name] = sorted(folder.rglob("*.tsv"))
        return cls(
            config=config,
            sweep=sweep,
            manifest=manifest,
            dropped=_existing(under(layout.DROPPED)),
            records={
                s: path
                for s in subjects
                if (path := under(layout.INGEST_RECORD, subject=s)).is_file()
            },
            splits=under(layout.SPLITS),
            checks=_existing(under(layout.SPLITS_CHECKS)),
            centre_error=_existing(under(layout.CENTRE_ERROR)),
            kept_fraction=_existing(under(layout.KEPT_FRACTION)),
            n4_qc={s: under(layout.N4_QC, subject=s) for s in qc_subjects},
            crop_qc={s: under(layout.CROP_QC, subject=s) for s in qc_subjects},
            tables=layout.named_under(results, files, "table_"),
            figures=layout.named_under(results, files, "figure_"),
            final=final,
            outlines={r: under(layout.OUTLINES, run=r) for r in finals},
            unlabelled={r: under(layout.UNLABELLED_FIGURE, run=r) for r in finals},
            provenance={r: under(layout.RUN_PROVENANCE, run=r) for r in runs},
            benchmarks=found,
            description=_existing(under(layout.DATA_DESCRIPTION)),
            final_qc={r: path for r in finals if (path := under(layout.FINAL_QC, run=r)).is_file()},
            test_per_patient={r: under(layout.TEST_PER_PATIENT, run=r) for r in finals},
            val_per_patient={
                run.run_id: under(layout.VAL_PER_PATIENT, run=run.run_id)
                for r in finals
                for run in members[r]
            },
        )


def read_table(path: str | Path, text: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """A CSV whose `text` columns stay verbatim ("none", "true" are levels, not missing) and
    whose other columns become numbers where every non-empty cell is one."""
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False)
    for column in table.columns:
        if column not in text:
            converted = pd.to_numeric(table[column].replace("", None), errors="coerce")
            if not (converted.isna() & (table[column] != "")).any():
                table[column] = converted
    return table


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None
