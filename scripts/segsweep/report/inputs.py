"""Every file the thesis reads, by what it is: the workflow's report rule hands them over as its
declared inputs; run by hand, `ReportInputs.under` (segmentation) or `classification_inputs`
finds them in a results folder through the layout."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout
from segsweep.sweep.grammar import sweep_runs, swept_names

Paths = Mapping[str, str | Path]


@dataclass(frozen=True)
class ReportInputs:
    """The configuration and sweep, and the files of one workflow run the thesis shows.

    `tables` holds the analysis tables by name (`layout.TABLES` and "runs"), `figures` the
    figures stage's PNGs by name ("jitter_<name>", "boxplot_<split>", "histogram_<split>",
    "training_curves", "checkpoint_scores", "ranking", "cost"); per-subject and per-run files are
    keyed by subject or run id; `benchmarks` maps a rule to its jobs' benchmark files.
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

    @classmethod
    def under(
        cls,
        results: str | Path,
        config: dict[str, Any],
        sweep: dict[str, Any],
        qc_subjects: list[str],
        benchmarks: str | Path | None = None,
    ) -> ReportInputs:
        """The files of the run whose results folder is `results` (and, when given, the
        benchmark files under `benchmarks`, one folder per rule group)."""

        def under(pattern: str, **wildcards: str) -> Path:
            return layout.under(results, pattern, **wildcards)

        manifest = under(layout.DATA_MANIFEST)
        subjects = pd.read_csv(manifest, dtype=str)["subject_id"].tolist()
        runs = [run.run_id for run in sweep_runs(config, sweep)]
        final = under(layout.FINAL)
        finals = pd.read_csv(final, dtype=str)["run_id"].tolist()
        figures = {f"jitter_{n}": under(layout.JITTER, name=n) for n in swept_names(sweep)}
        for split in ("val", "test"):
            figures[f"boxplot_{split}"] = under(layout.BOXPLOT, split=split)
            figures[f"histogram_{split}"] = under(layout.HISTOGRAM, split=split)
        figures |= {
            "training_curves": under(layout.TRAINING_CURVES),
            "checkpoint_scores": under(layout.CHECKPOINT_SCORES),
            "ranking": under(layout.RANKING_FIGURE),
            "cost": under(layout.COST_FIGURE),
        }
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
            tables={
                "runs": under(layout.RUNS_TABLE),
                "configurations": under(layout.CONFIGURATIONS_TABLE),
                **{n: under(layout.TABLE, name=n) for n in layout.TABLES},
            },
            figures=figures,
            final=final,
            outlines={r: under(layout.OUTLINES, run=r) for r in finals},
            unlabelled={r: under(layout.UNLABELLED_FIGURE, run=r) for r in finals},
            provenance={r: under(layout.RUN_PROVENANCE, run=r) for r in runs},
            benchmarks=found,
            description=_existing(under(layout.DATA_DESCRIPTION)),
        )


def classification_inputs(
    results: str | Path,
    config: dict[str, Any],
    sweep: dict[str, Any],
    qc_subjects: list[str],
    benchmarks: str | Path | None = None,
) -> ReportInputs:
    """The files of the classification run whose results folder is `results`, as
    `ReportInputs.under` finds them, with its own tables (`layout.CLASSIFICATION_TABLES`), the
    sweep's figures and its own, and its images and final models' test predictions and
    galleries in place of the segmentation's (it has no QC figures: `qc_subjects` is empty)."""
    inputs = ReportInputs.under(results, config, sweep, qc_subjects, benchmarks)

    def under(pattern: str, **wildcards: str) -> Path:
        return layout.under(results, pattern, **wildcards)

    finals = pd.read_csv(inputs.final, dtype=str)["run_id"].tolist()
    figures = {f"jitter_{n}": under(layout.JITTER, name=n) for n in swept_names(sweep)}
    figures |= {
        "training_curves": under(layout.TRAINING_CURVES),
        "checkpoint_scores": under(layout.CHECKPOINT_SCORES),
        "cost": under(layout.COST_FIGURE),
        "cls_roc": under(layout.ROC_FIGURE),
        "cls_confusion": under(layout.CONFUSION_FIGURE),
        "cls_probabilities": under(layout.PROBABILITY_FIGURE),
        "cls_examples": under(layout.EXAMPLES_FIGURE),
    }
    return replace(
        inputs,
        tables={
            "runs": under(layout.RUNS_TABLE),
            "configurations": under(layout.CONFIGURATIONS_TABLE),
            **{n: under(layout.TABLE, name=n) for n in layout.CLASSIFICATION_TABLES},
        },
        figures=figures,
        outlines={},
        unlabelled={},
        classification={
            "images": under(layout.IMAGES_TABLE),
            "test_per_study": {r: under(layout.TEST_PER_STUDY, run=r) for r in finals},
            "test_per_image": {r: under(layout.TEST_PER_IMAGE, run=r) for r in finals},
            "gallery": {r: under(layout.GALLERY, run=r) for r in finals},
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
