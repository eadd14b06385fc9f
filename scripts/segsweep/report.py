"""The thesis document: one self-contained HTML file and a PDF printed from the same HTML.

`build_context` gathers everything the document shows — tables read from results/tables, figures
as PNG data URIs, text written from the configuration — and numbers every table and figure per
chapter ("Table 4.2", "Figure A.1") in document order, so the template can refer to them by number.
`render_html` fills `report/thesis.html.j2` (which inlines `thesis.css`); `render_pdf` prints that
HTML with WeasyPrint (page numbers and running headers come from the CSS's @page rules).
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import platform
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml
from markupsafe import Markup

from segsweep.analysis import (
    CLASS_METRICS,
    FOREGROUND,
    METRIC_NAMES,
    configured_pairs,
    format_level,
    hue_partner,
    level_order,
    pair_grid,
    score_label,
)
from segsweep.inputs import channel_names
from segsweep.provenance import config_hash, git_revision, package_version
from segsweep.sweep import expand_sweep, swept_names

TEMPLATES = Path(__file__).resolve().parents[2] / "report"
TEMPLATE = "thesis.html.j2"
PACKAGES = ("snakemake", "torch", "simpleitk", "numpy", "pandas")
SPLIT_ORDER = ["train", "val", "test", "unlabelled"]
SPLIT_NAMES = {"val": "validation set", "test": "test set"}
SPACE_ORDER = ["processed", "native"]
PAIR_NOTE = (
    "The format is “mean/median (count)”, where count is the number of experiments with this "
    "particular parameter configuration."
)
NA = "–"
NUMERIC = re.compile(r"^(–|-/-.*|[-+]?\d[\d.e+-]*(\W.*)?)$")  # numbers, "0.6 (0.5)", "-/- (0)"


@dataclass
class Table:
    """A numbered table: header, rows of text (or Markup for bold cells), notes under it."""

    id: str
    number: str
    caption: str
    columns: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    group_header: list[tuple[str, int]] = field(default_factory=list)
    long: bool = False
    kind: str = "Table"

    @property
    def numeric(self) -> list[bool]:
        """Per column: do all cells hold numbers (right-aligned)?"""
        return [
            all(NUMERIC.match(Markup(row[i]).striptags()) for row in self.rows)
            for i in range(len(self.columns))
        ]

    @property
    def short(self) -> str:
        return short_caption(self.caption)


@dataclass
class Figure:
    """A numbered figure embedded as a data URI, so the HTML is one self-contained file."""

    id: str
    number: str
    caption: str
    src: str
    kind: str = "Figure"

    @property
    def short(self) -> str:
        return short_caption(self.caption)


def short_caption(caption: str) -> str:
    """The first sentence of a caption, for the lists of tables and figures."""
    first = caption.split(". ")[0]
    return first if first.endswith(".") else first + "."


class Numbering:
    """Numbers per kind and chapter in creation order; build in document order to match."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self.tables: list[Table] = []
        self.figures: list[Figure] = []

    def _next(self, kind: str, chapter: str) -> tuple[str, str]:
        self._counts[kind, chapter] += 1
        number = f"{chapter}.{self._counts[kind, chapter]}"
        return f"{kind.lower()}-{number.replace('.', '-')}", number

    def table(self, chapter: str, caption: str, frame: pd.DataFrame, **options: Any) -> Table:
        """A table from a frame of display text (format numbers before)."""
        ident, number = self._next("Table", chapter)
        rows = [list(row) for row in frame.itertuples(index=False)]
        table = Table(ident, number, caption, [str(c) for c in frame.columns], rows, **options)
        self.tables.append(table)
        return table

    def figure(self, chapter: str, caption: str, png: Path) -> Figure:
        """A figure from a PNG file, inlined as base64."""
        ident, number = self._next("Figure", chapter)
        src = "data:image/png;base64," + base64.b64encode(Path(png).read_bytes()).decode("ascii")
        figure = Figure(ident, number, caption, src)
        self.figures.append(figure)
        return figure


def number(value: Any, digits: int = 3) -> str:
    """A number with `digits` decimals; undefined values as a dash."""
    if value is None or pd.isna(value):
        return NA
    return f"{float(value):.{digits}f}"


def integer(value: Any) -> str:
    return NA if value is None or pd.isna(value) else str(int(value))


def sentence_case(text: str) -> str:
    """First letter upper case, the rest untouched ("Dice" stays "Dice")."""
    return text[:1].upper() + text[1:]


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _read(path: Path, text: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
    """A CSV whose `text` columns stay verbatim ("none", "true" are levels, not missing)."""
    table = pd.read_csv(path, dtype=dict.fromkeys(text, str), keep_default_na=False)
    for column in table.columns:
        if column not in text:
            converted = pd.to_numeric(table[column].replace("", None), errors="coerce")
            if not (converted.isna() & (table[column] != "")).any():
                table[column] = converted
    return table


# ---------------------------------------------------------------- chapter 1: data
def dataset_frame(manifest: pd.DataFrame, records: dict[str, dict] | None = None) -> pd.DataFrame:
    """Per source: perspective(s), number of subjects, labelled and valid ones and the original
    resolution (matrix and voxel size from the subjects' ingest.json `records`), plus a total."""
    records = records or {}
    manifest = manifest.assign(
        source=manifest["source"].replace("", "unknown"),
        labelled=_flag(manifest["labelled"]),
        valid=_flag(manifest["valid"]),
    )
    rows = []
    for source, group in manifest.groupby("source", sort=True):
        perspectives = ", ".join(sorted(p for p in group["perspective"].unique() if p)) or NA
        counts = [len(group), group["labelled"].sum(), group["valid"].sum()]
        found = [resolution(records.get(s)) for s in group["subject_id"]]
        resolutions = "; ".join(sorted({r for r in found if r})) or NA
        rows.append([source, perspectives, *counts, resolutions])
    total = [len(manifest), manifest["labelled"].sum(), manifest["valid"].sum()]
    rows.append(["Total", "", *total, ""])
    columns = ["Source", "Perspective", "Subjects", "Labelled", "Valid", "Resolution"]
    return pd.DataFrame(rows, columns=columns).astype({c: str for c in columns})


def resolution(record: dict | None) -> str | None:
    """Original matrix and voxel size of an ingest.json record: "100 × 100 × 41 (1.6 × 1.6 × 3
    mm)"; None without one (no record, or a subject that failed validation)."""
    original = (record or {}).get("original") or {}
    size, spacing = original.get("size"), original.get("spacing")
    if not size:
        return None
    text = " × ".join(str(int(n)) for n in size)
    if spacing:
        text += " (" + " × ".join(f"{round(float(v), 2):g}" for v in spacing) + " mm)"
    return text


def ingest_records(data_dir: Path, subjects: list[str]) -> dict[str, dict]:
    """The ingest.json record of each subject that has one."""
    records = {}
    for subject in subjects:
        path = Path(data_dir) / subject / "ingest.json"
        if path.is_file():
            records[subject] = json.loads(path.read_text())
    return records


def _flag(values: pd.Series) -> pd.Series:
    """Booleans from a CSV column that may hold True/False, true/false or 1/0."""
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "yes"])


def split_frame(splits: pd.DataFrame) -> pd.DataFrame:
    """Subjects per split (rows) and stratum (columns), with totals."""
    column = "stratum" if "stratum" in splits else None
    if column is None:
        counts = splits.groupby("split").size().to_frame("Total")
    else:
        counts = pd.crosstab(splits["split"], splits[column])
        counts["Total"] = counts.sum(axis=1)
    order = [s for s in SPLIT_ORDER if s in counts.index] + sorted(
        s for s in counts.index if s not in SPLIT_ORDER
    )
    counts = counts.reindex(order).rename_axis(None, axis=1)
    frame = counts.reset_index().rename(columns={"split": "Split"})
    return frame.astype(str)


def checks_frame(checks: pd.DataFrame) -> pd.DataFrame:
    """The split audit (splits_checks.csv: check, passed, detail) as display text."""
    return pd.DataFrame(
        {
            "Check": checks["check"].astype(str).map(sentence_case),
            "Passed": _flag(checks["passed"]).map({True: "yes", False: "no"}),
            "Detail": checks["detail"].astype(str),
        }
    )


def data_text(config: dict[str, Any]) -> str:
    """Where the subjects come from, in one sentence."""
    data = config.get("data", {})
    if data.get("source") == "synthetic":
        seed = data.get("synthetic", {}).get("seed")
        return f"The subjects are a synthetic knee MRI cohort generated by segsweep (seed {seed})."
    return f"The subjects are those listed in the manifest {data.get('manifest')}."


# ---------------------------------------------------------------- chapter 2: preprocessing
def inputs_sentence(config: dict[str, Any], used: bool) -> str | None:
    """What the levels of `inputs` mean, when runs choose their inputs (`used`)."""
    if not used:
        return None
    data, pre = config.get("data", {}), config.get("preprocess", {})
    channels, method = data.get("channels"), pre.get("normalise", "zscore")
    count = len(channels) if channels else 1  # without data.channels: the one `image` column
    names = channel_names(channels, count, method, pre.get("windows"))
    listed = ", ".join(f"“{name}”" for name in names)
    return (
        f"The packed images have the channels {listed}. Each run’s “inputs” lists the channels "
        "its network saw, in order (“none”: all of them); an entry “name[low,high]” is that "
        "channel clipped to [low, high] in its original units (Hounsfield units for CT) and "
        "scaled to [0, 1] (windowing), computed for the run from the packed values."
    )


def preprocessing_text(config: dict[str, Any], inputs_used: bool = False) -> list[str]:
    """The preprocessing chapter as paragraphs, written from config["preprocess"] and the labels."""
    pre = config.get("preprocess", {})
    paragraphs = [
        "Every image was read, validated and reoriented to one canonical orientation (DICOM "
        "“LIP”), so that each slice is a coronal plane with superior at the top."
    ]
    n4 = pre.get("n4", {})
    if n4.get("enabled", False):
        iterations = ", ".join(str(i) for i in n4.get("iterations", []))
        paragraphs.append(
            "Intensity inhomogeneity was corrected with N4 bias field correction (SimpleITK), "
            f"fitted on the image shrunk in-plane by a factor of {n4.get('shrink')} with "
            f"{plural(len(n4.get('iterations', [])), 'fitting level')}, at most {iterations} "
            "iterations per "
            f"level and a convergence threshold of {n4.get('convergence')}; the estimated field "
            "was applied to the image at full resolution."
        )
    else:
        paragraphs.append("No bias field correction was applied.")
    crop = pre.get("crop", {})
    if crop:
        size = crop.get("size")
        paragraphs.append(
            f"Each volume was cropped to a square in-plane window of {crop.get('window_mm')} mm "
            f"around {centre_phrase(crop)} and resampled to {size} × {size} "
            f"pixels. The number of slices was harmonised to {crop.get('slices')} by padding to a "
            "multiple and keeping every n-th slice; masks were never interpolated across slices."
        )
    method = pre.get("normalise")
    if method:
        name = "z-scoring (subtracting the mean and dividing by the standard deviation)"
        how = name if method == "zscore" else f"the “{method}” method"
        paragraphs.append(
            f"Intensities were normalised by {how}, with statistics computed on the training split "
            "only, so that no information from validation or test subjects reaches training."
        )
    inputs = inputs_sentence(config, inputs_used)
    if inputs:
        paragraphs.append(inputs)
    labels = config.get("data", {}).get("labels", {})
    if labels:
        by_value = sorted(labels.items(), key=lambda item: item[1])
        listed = ", ".join(f"{name} ({value})" for name, value in by_value)
        paragraphs.append(
            f"The masks label {listed}; “foreground” denotes the union of all classes and is the "
            "class every run is compared on."
        )
    return paragraphs


def centre_phrase(crop: dict[str, Any]) -> str:
    """What the crop window is centred on, per preprocess.crop.centre (segsweep.crop)."""
    method = crop.get("centre", "joint")
    if method == "fixed":
        point = crop.get("centre_mm") or []
        where = f" ({', '.join(f'{float(v):g}' for v in point)} mm)" if point else ""
        return f"a fixed physical point{where}"
    phrases = {
        "joint": "the joint centre detected from the image",
        "foreground": "the centroid of the image's foreground (Otsu threshold)",
        "image": "the image centre",
    }
    return phrases.get(method, f"the “{method}” centre")


def reference_centre_note(labels: dict[str, int]) -> str:
    """How the mask-derived reference centre is defined (segsweep.crop.mask_centre)."""
    if len(labels) == 1:
        return "With a single class, the reference centre is the centroid of all labelled voxels."
    return (
        "The reference centre is the centroid of the zone where two classes meet; where only one "
        "class is present or no classes meet, it is the centroid of all labelled voxels."
    )


def centre_error_frame(centre: pd.DataFrame) -> pd.DataFrame:
    """Centre error per labelled subject (centre_error.csv) with a mean and a maximum row; the
    maximum of the offsets is of their absolute values. Undefined errors (no reference centre)
    are a dash and left out of the summary."""
    values = ["error_mm", "dx_mm", "dy_mm", "dz_mm"]
    numbers = centre[values].apply(pd.to_numeric, errors="coerce")
    rows = [
        [str(subject), str(method), *(number(v, 1) for v in row)]
        for subject, method, row in zip(
            centre["subject_id"], centre["method"], numbers.itertuples(index=False), strict=True
        )
    ]
    rows.append(["Mean", "", *(number(v, 1) for v in numbers.mean())])
    rows.append(["Max", "", *(number(v, 1) for v in numbers.abs().max())])
    columns = ["Subject", "Method", "Error (mm)", "x (mm)", "y (mm)", "z (mm)"]
    return pd.DataFrame(rows, columns=columns)


def centre_summary(centre: pd.DataFrame) -> dict[str, Any] | None:
    """Mean and maximum centre error for the text; None when no error is defined."""
    errors = pd.to_numeric(centre["error_mm"], errors="coerce").dropna()
    if errors.empty:
        return None
    worst = centre.loc[errors.idxmax(), "subject_id"]
    return {
        "mean": number(errors.mean(), 1),
        "max": number(errors.max(), 1),
        "worst": str(worst),
        "n": len(errors),
    }


def kept_fraction_frame(kept: pd.DataFrame) -> pd.DataFrame:
    """Kept fraction per subject and class (kept_fraction.csv) with mean and minimum rows;
    classes absent from a subject are a dash and left out of the summary."""
    classes = [c for c in kept.columns if c != "subject_id"]
    numbers = kept[classes].apply(pd.to_numeric, errors="coerce")
    rows = [
        [str(subject), *(number(v) for v in row)]
        for subject, row in zip(kept["subject_id"], numbers.itertuples(index=False), strict=True)
    ]
    rows.append(["Mean", *(number(v) for v in numbers.mean())])
    rows.append(["Min", *(number(v) for v in numbers.min())])
    return pd.DataFrame(rows, columns=["Subject", *(sentence_case(c) for c in classes)])


def kept_summary(kept: pd.DataFrame) -> dict[str, Any] | None:
    """The smallest kept fraction over subjects and classes, for the text."""
    classes = [c for c in kept.columns if c != "subject_id"]
    values = kept.set_index("subject_id")[classes].apply(pd.to_numeric, errors="coerce").stack()
    if values.empty:
        return None
    subject, name = values.idxmin()
    return {"min": number(values.min()), "subject": str(subject), "class": str(name)}


# ---------------------------------------------------------------- chapter 3: methods
def selection_sentence(selection: dict[str, Any], checkpoint_every: Any = None) -> str:
    """The checkpoint-selection rule of config["selection"] as a sentence."""
    best = "highest" if selection.get("higher_is_better", True) else "lowest"
    level = {"patient": "per-patient (3D)", "slice": "per-slice"}.get(
        selection["level"], f"per-{selection['level']}"
    )
    metric = METRIC_NAMES.get(selection["metric"], selection["metric"])
    every = "every epoch" if checkpoint_every == 1 else f"every {checkpoint_every} epochs"
    saved = f"Checkpoints were saved {every}. " if checkpoint_every else ""
    return (
        f"{saved}For each run, the checkpoint with the {best} {selection['aggregate']} {level} "
        f"{metric} of the {selection['class']} class on the validation set was selected; this "
        "validation score is the run's score in all tables and figures of chapter 4."
    )


def final_sentence(final_config: dict[str, Any]) -> str:
    """How the final models were chosen, from config["final"]."""
    n_best = int(final_config.get("n_best", 1))
    best = "best run" if n_best == 1 else f"{n_best} best runs"
    text = f"The final models are the {best} overall on validation"
    group_by = final_config.get("group_by") or []
    if group_by:
        text += " and the best run for each combination of " + ", ".join(f"“{g}”" for g in group_by)
    return text + "; only these were evaluated on the test set."


def swept_frame(runs: list, sweep: dict[str, Any], base: dict[str, Any]) -> pd.DataFrame:
    """Swept hyperparameters with their levels and the value every other run keeps."""
    rows = []
    for name in swept_names(sweep):
        levels = level_order(pd.Series([run.values[name] for run in runs]))
        rows.append([name, ", ".join(format_level(v) for v in levels), format_level(base[name])])
    return pd.DataFrame(rows, columns=["Hyperparameter", "Levels", "Base value"])


def fixed_frame(sweep: dict[str, Any], defaults: dict[str, Any]) -> pd.DataFrame:
    """Settings shared by all runs: train defaults with the sweep's `fixed` overrides applied."""
    fixed = sweep.get("fixed") or {}
    swept = set(swept_names(sweep))
    rows = [
        [name, format_level(fixed.get(name, value)), "sweep: fixed" if name in fixed else "config"]
        for name, value in sorted(defaults.items())
        if name not in swept
    ]
    return pd.DataFrame(rows, columns=["Setting", "Value", "Set in"])


# ---------------------------------------------------------------- chapter 4: results
def hyperparameter_frame(table: pd.DataFrame) -> pd.DataFrame:
    """One hyperparameter's rows of hyperparameters.csv in the thesis layout."""
    frame = table[["level", "Min", "Max", "STD", "Mean", "Median", "No. experiments"]].copy()
    for column in ["Min", "Max", "STD", "Mean", "Median"]:
        frame[column] = frame[column].map(number)
    frame["No. experiments"] = frame["No. experiments"].map(integer)
    return frame.rename(columns={"level": "Level"})


def extremes(table: pd.DataFrame, higher_is_better: bool) -> dict[str, Any] | None:
    """The best and worst level by mean score, for the text; None with fewer than two levels."""
    defined = table.dropna(subset=["Mean"])
    if len(defined) < 2:
        return None
    ordered = defined.sort_values("Mean", ascending=not higher_is_better)
    best, worst = ordered.iloc[0], ordered.iloc[-1]
    return {
        "tie": best["Mean"] == worst["Mean"],
        "best": best["level"],
        "best_mean": number(best["Mean"]),
        "best_n": int(best["No. experiments"]),
        "worst": worst["level"],
        "worst_mean": number(worst["Mean"]),
    }


def pair_frame(table: pd.DataFrame, a: str) -> pd.DataFrame:
    """A pair grid with the levels of `a` as its first column."""
    grid = pair_grid(table)
    return grid.reset_index(names=a)


def runs_frame(runs_df: pd.DataFrame) -> pd.DataFrame:
    """Runs (all, or the best ones) as display text: levels verbatim, scores with 3 decimals."""
    frame = runs_df.copy()
    for column in frame.columns:
        if column in {"score", "dice_mean", "dice_median", "dice_std"}:
            frame[column] = frame[column].map(number)
        elif column in {"rank", "selected_epoch"}:
            frame[column] = frame[column].map(integer)
        else:
            frame[column] = frame[column].map(format_level)
    names = {"rank": "Rank", "run_id": "Run", "score": "Score", "selected_epoch": "Epoch"}
    names |= {"status": "Status"}
    names |= {"dice_mean": "Dice mean", "dice_median": "Dice median", "dice_std": "Dice STD"}
    return frame.rename(columns=names)


def final_models_frame(final: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Run": final["run_id"].astype(str),
            "Chosen as": final["group"].astype(str),
            "Validation score": final["score"].map(number),
        }
    )


def per_patient_frame(table: pd.DataFrame, run_ids: list[str]) -> tuple[pd.DataFrame, dict]:
    """Patients × final models as "mean (median)", the best mean per patient in bold.

    Bold marks every model tied for the highest mean Dice of a patient, and only when two or
    more models have a defined mean for that patient. Also returns each model's number of wins.
    """
    patients = sorted(table["patient_id"].astype(str).unique(), key=_natural)
    cells = table.assign(patient_id=table["patient_id"].astype(str)).set_index(
        ["patient_id", "run_id"]
    )
    wins = dict.fromkeys(run_ids, 0)
    rows = []
    for patient in patients:
        means = {r: cells["mean"].get((patient, r), float("nan")) for r in run_ids}
        defined = {r: m for r, m in means.items() if not pd.isna(m)}
        top = max(defined.values()) if len(defined) >= 2 else None
        row = [patient]
        for run in run_ids:
            text = f"{number(means[run])} ({number(cells['median'].get((patient, run)))})"
            if top is not None and run in defined and defined[run] == top:
                wins[run] += 1
                text = Markup("<strong>{}</strong>").format(text)
            row.append(text)
        rows.append(row)
    return pd.DataFrame(rows, columns=["Patient", *run_ids]), wins


def _natural(text: str) -> tuple:
    """Sort key that puts patient 9 before patient 10."""
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def metric_conventions() -> list[str]:
    """The metric definitions and empty conventions (segsweep.metrics, segsweep.distances)."""
    return [
        "Metrics are computed per class and for the foreground (the union of all classes) from "
        "the confusion counts of each slice and of each patient's volume (per patient, 3D; the "
        "primary level): Dice (F1) = 2TP/(2TP+FP+FN), IoU = TP/(TP+FP+FN), sensitivity = "
        "TP/(TP+FN), specificity = TN/(TN+FP), precision = TP/(TP+FP), accuracy = "
        "(TP+TN)/(TP+FP+FN+TN) and F2 = 5TP/(5TP+4FN+FP) (Fβ with β = 2, weighting recall). "
        "Volumes are voxel counts times the voxel volume, in mL.",
        "Per patient, the surface distances HD95 and ASSD are computed in mm on the voxel grid "
        "with its spacing. Surface voxels are mask voxels with a face neighbour outside the mask; "
        "distances run between voxel centres from each surface to the other. HD95 is the larger of "
        "the two directed 95th percentiles, ASSD the mean of the distances of both directions "
        "pooled.",
        "Empty conventions: when reference and prediction are both empty, Dice, IoU, F2, "
        "sensitivity, precision, HD95 and ASSD are undefined; such slices or patients are left "
        "out of means and medians but counted. An empty reference with false positives scores a "
        "Dice, IoU, F2 and precision of 0; a missed structure (empty prediction) scores 0 "
        "sensitivity. When exactly one of reference and prediction is empty, HD95 and ASSD take "
        "the worst case, the diagonal of the image in mm, never an undefined value. Specificity "
        "is undefined only when the reference covers every voxel.",
    ]


def ci_text(low: Any, high: Any) -> str:
    return NA if pd.isna(low) or pd.isna(high) else f"[{number(low)}, {number(high)}]"


def p_value(value: Any) -> str:
    if value is None or pd.isna(value):
        return NA
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def kruskal_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Kruskal–Wallis per hyperparameter with the best − worst median difference and its CI."""
    rows = [
        [
            row["hyperparameter"],
            integer(row["levels"]),
            integer(row["n"]),
            number(row["H"]),
            p_value(row["p"]),
            f"{format_level(row['best'])} − {format_level(row['worst'])}"
            if row["best"] != ""
            else NA,
            number(row["median_difference"]),
            ci_text(row["ci_low"], row["ci_high"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Hyperparameter", "Levels", "Runs", "H", "p", "Best − worst", "Δ median", "95 % CI"]
    return pd.DataFrame(rows, columns=columns)


def distribution_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per final model: the distribution of per-slice foreground Dice."""
    rows = [
        [
            row["run_id"],
            integer(row["slices"]),
            integer(row["undefined"]),
            *(number(row[c]) for c in ["mean", "median", "std", "q25", "q75"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Model", "Slices", "Undefined", "Mean", "Median", "STD", "25 %", "75 %"]
    return pd.DataFrame(rows, columns=columns)


def summary_cell(mean: Any, median: Any, std: Any) -> str:
    """One "mean (median) ± std" cell (thesis Tables 5.15/5.18)."""
    if pd.isna(mean):
        return NA
    return f"{number(mean)} ({number(median)}) ± {number(std)}"


def metrics_frame(table: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """Metrics (rows) × final models (columns) as "mean (median) ± std" over patients."""
    rows = []
    for metric in dict.fromkeys(table["metric"]):
        row = [METRIC_NAMES.get(metric, metric)]
        for run in run_ids:
            match = table[(table["metric"] == metric) & (table["run_id"] == run)]
            row.append(
                summary_cell(*match[["mean", "median", "std"]].iloc[0]) if len(match) else NA
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["Metric", *run_ids])


def _space_key(space: str) -> tuple[int, str]:
    """Processed space first, then native, then any other in alphabetical order."""
    return (SPACE_ORDER.index(space) if space in SPACE_ORDER else len(SPACE_ORDER), space)


def _class_cells(cells: pd.DataFrame, key: tuple[str, str, str]) -> list[str]:
    """Patients and a "mean (median) ± std" cell per class metric of (run, space, class)."""
    values = [
        summary_cell(*cells.loc[(*key, metric), ["mean", "median", "std"]])
        if (*key, metric) in cells.index
        else NA
        for metric in CLASS_METRICS
    ]
    return [integer(cells.loc[(*key, CLASS_METRICS[0]), "patients"]), *values]


def class_frame(table: pd.DataFrame, run_ids: list[str]) -> pd.DataFrame:
    """class_summary.csv rows of one split: per final model, space and class (in the CSV's
    order), the number of patients and Dice, IoU and HD95 as "mean (median) ± std"; the Space
    column only when the split was scored in more than one space."""
    spaces = sorted(dict.fromkeys(table["space"]), key=_space_key)
    cells = table.set_index(["run_id", "space", "class", "metric"])
    rows = [
        [run, space, name, *_class_cells(cells, (run, space, name))]
        for run in run_ids
        for space in spaces
        for name in dict.fromkeys(table["class"])
        if (run, space, name, CLASS_METRICS[0]) in cells.index
    ]
    columns = ["Model", "Space", "Class", "Patients", *(METRIC_NAMES[m] for m in CLASS_METRICS)]
    frame = pd.DataFrame(rows, columns=columns)
    return frame if len(spaces) > 1 else frame.drop(columns="Space")


def class_extremes(table: pd.DataFrame, run_ids: list[str]) -> list[dict[str, str]]:
    """Per final model with two or more classes of defined mean Dice in the processed space
    (the foreground left out): the classes with the highest and the lowest mean Dice."""
    dice = table[
        (table["metric"] == "dice")
        & (table["space"] == "processed")
        & (table["class"] != FOREGROUND)
    ].dropna(subset=["mean"])
    found = []
    for run in run_ids:
        ordered = dice[dice["run_id"] == run].sort_values("mean", ascending=False, kind="stable")
        if len(ordered) >= 2:
            best, worst = ordered.iloc[0], ordered.iloc[-1]
            found.append(
                {
                    "run": run,
                    "best": str(best["class"]),
                    "best_mean": number(best["mean"]),
                    "worst": str(worst["class"]),
                    "worst_mean": number(worst["mean"]),
                }
            )
    return found


def tests_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Paired tests of the final models (Friedman, Wilcoxon with Holm) with bootstrap CIs."""
    rows = [
        [
            row["test"],
            row["a"] if row["test"] == "Friedman" else f"{row['a']} − {row['b']}",
            integer(row["n"]),
            number(row["statistic"]),
            p_value(row["p"]),
            p_value(row["p_holm"]),
            number(row["median_difference"]),
            ci_text(row["ci_low"], row["ci_high"]),
        ]
        for _, row in table.iterrows()
    ]
    columns = ["Test", "Models", "Patients", "Statistic", "p", "p (Holm)", "Δ median", "95 % CI"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- appendix C: provenance
def provenance_frame(config: dict[str, Any], sweep: dict[str, Any]) -> pd.DataFrame:
    rows = [["python", platform.python_version()]]
    rows += [[name, package_version(name)] for name in PACKAGES]
    rows += [["git revision", git_revision()], ["config hash (sha256)", config_hash(config, sweep)]]
    return pd.DataFrame(rows, columns=["Item", "Value"])


def run_provenance_frame(runs_dir: Path) -> pd.DataFrame | None:
    """The training runs grouped by what produced them (each run's provenance.json): git
    revision, config hash and torch version, with the number of runs and their devices; None
    without provenance files."""
    records = [json.loads(p.read_text()) for p in sorted(Path(runs_dir).glob("*/provenance.json"))]
    if not records:
        return None
    frame = pd.DataFrame(
        {
            # the commit shortened to 12 digits, keeping a "+dirty" mark
            "Git revision": [r["git_revision"][:12] + r["git_revision"][40:] for r in records],
            "Config hash": [r["config_hash"][:12] for r in records],
            "torch": [r["packages"].get("torch", NA) for r in records],
            "Device": [str(r["device"]) for r in records],
        }
    )
    keys = ["Git revision", "Config hash", "torch"]
    grouped = frame.groupby(keys, sort=True)["Device"]
    table = grouped.agg(lambda d: ", ".join(sorted(set(d)))).to_frame("Devices")
    table.insert(0, "Runs", grouped.size().astype(str))
    return table.reset_index()


def failed_frame(runs_df: pd.DataFrame) -> pd.DataFrame:
    """The failed runs of runs.csv with their error."""
    failed = runs_df[runs_df["status"] == "failed"]
    return pd.DataFrame({"Run": failed["run_id"].astype(str), "Error": failed["error"]})


def benchmarks_frame(folder: Path) -> pd.DataFrame | None:
    """Runtime per rule from Snakemake's benchmark files (benchmarks/<rule>/*.tsv), if any."""
    rows = []
    for rule in sorted(p for p in Path(folder).glob("*") if p.is_dir()):
        tables = [pd.read_csv(f, sep="\t") for f in sorted(rule.rglob("*.tsv"))]
        seconds = pd.concat([t["s"] for t in tables if "s" in t]) if tables else pd.Series()
        if seconds.empty:
            continue
        rows.append([rule.name, len(tables), number(seconds.sum(), 1), number(seconds.max(), 1)])
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["Rule", "Jobs", "Total (s)", "Longest job (s)"])


# ---------------------------------------------------------------- the document
def build_context(
    config: dict[str, Any],
    sweep: dict[str, Any],
    results: Path,
    date: str | None = None,
    benchmarks: Path | None = None,
    qc_subjects: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """Everything the template shows; tables and figures numbered in document order. The N4
    and crop QC figures are shown for `qc_subjects` (the workflow picks one per source)."""
    results = Path(results)
    tables, figures = results / "tables", results / "figures"
    numbering = Numbering()
    swept = swept_names(sweep)
    base = {**config["train"], **(sweep.get("fixed") or {})}
    runs = expand_sweep(sweep, config["train"])
    selection = config["selection"]
    higher = bool(selection.get("higher_is_better", True))
    score = score_label(selection)

    manifest = pd.read_csv(results / "data" / "manifest.csv", dtype=str, keep_default_na=False)
    splits = pd.read_csv(results / "splits" / "splits.csv", dtype=str, keep_default_na=False)
    data = {
        "text": data_text(config),
        "n_subjects": len(manifest),
        "n_labelled": int(_flag(manifest["labelled"]).sum()),
        "dataset": numbering.table(
            "1",
            "Subjects per source: perspective, number, labelled and valid subjects, and the "
            "original resolution (matrix size and voxel spacing) of the images.",
            dataset_frame(
                manifest,
                ingest_records(results / "data", manifest["subject_id"].tolist()),
            ),
        ),
        "splits": numbering.table(
            "1", "Subjects per split and stratum (patient-level split).", split_frame(splits)
        ),
        "stratify": config.get("split", {}).get("stratify"),
        "split_seed": config.get("split", {}).get("seed"),
        "dropped": None,
        "checks": None,
        "checks_passed": None,
    }
    checks_csv = results / "splits" / "splits_checks.csv"
    if checks_csv.is_file():
        checks = pd.read_csv(checks_csv, dtype=str, keep_default_na=False)
        data["checks_passed"] = bool(_flag(checks["passed"]).all())
        data["checks"] = numbering.table(
            "1",
            "Audit of the split: checks that no subject, patient or image is in two of the "
            "training, validation and test sets.",
            checks_frame(checks),
        )
    dropped_csv = results / "data" / "dropped.csv"
    dropped = (
        pd.read_csv(dropped_csv, dtype=str, keep_default_na=False)
        if dropped_csv.is_file()
        else pd.DataFrame()
    )
    data["none_dropped"] = dropped_csv.is_file() and dropped.empty
    if len(dropped):
        data["dropped"] = numbering.table(
            "1",
            f"{plural(len(dropped), 'subject')} dropped as invalid, with the reason.",
            dropped,
        )

    crop = config.get("preprocess", {}).get("crop", {})
    labels = config.get("data", {}).get("labels", {})
    preprocessing_figures = []
    for subject in qc_subjects:
        png = results / "n4" / subject / "qc.png"
        preprocessing_figures.append(
            numbering.figure(
                "2",
                f"N4 bias field correction of {subject}: the middle slice before correction, the "
                "estimated multiplicative bias field, and after correction.",
                png,
            )
        )
        crop_qc = results / "crop" / subject / "qc.png"
        if crop_qc.is_file():
            preprocessing_figures.append(
                numbering.figure(
                    "2",
                    f"Crop of {subject}: the N4-corrected middle slice with the crop centre "
                    f"({centre_phrase(crop)}) and the square crop window, beside the cropped "
                    "slice.",
                    crop_qc,
                )
            )

    crop_tables: dict[str, Any] = dict.fromkeys(
        ["centre", "centre_summary", "kept", "kept_summary"]
    )
    crop_tables["centre_phrase"] = centre_phrase(crop)
    centre_csv = results / "crop" / "centre_error.csv"
    if centre_csv.is_file():
        centre = _read(centre_csv, text=["subject_id", "method"])
        if len(centre):
            crop_tables["centre_summary"] = centre_summary(centre)
            crop_tables["centre"] = numbering.table(
                "2",
                f"Distance of the crop centre ({centre_phrase(crop)}) from the reference centre "
                "derived from the mask, per labelled subject, and its offset along each axis "
                "(mm).",
                centre_error_frame(centre),
                notes=[
                    f"{reference_centre_note(labels)} Max is the largest error and the largest "
                    "absolute offset; “–” marks a subject without a reference centre."
                ],
            )
    kept_csv = results / "crop" / "kept_fraction.csv"
    if kept_csv.is_file():
        kept = _read(kept_csv, text=["subject_id"])
        if len(kept) and len(kept.columns) > 1:
            crop_tables["kept_summary"] = kept_summary(kept)
            crop_tables["kept"] = numbering.table(
                "2",
                "Fraction of each class's voxels inside the crop window, per labelled subject.",
                kept_fraction_frame(kept),
                notes=["“–” marks a class absent from the subject's mask."],
            )

    methods = {
        "n_runs": len(runs),
        "grids": sorted((sweep.get("grids") or {}).keys()),
        "repeats": int(sweep.get("repeats", 1)),
        "swept": numbering.table(
            "3",
            "Swept hyperparameters, their levels and the value of the base run.",
            swept_frame(runs, sweep, base),
        )
        if swept
        else None,
        "fixed": numbering.table(
            "3",
            "Settings shared by all runs (train defaults, with the sweep's fixed overrides).",
            fixed_frame(sweep, config["train"]),
        ),
        "selection": selection_sentence(selection, base.get("checkpoint_every")),
        "final": final_sentence(config.get("final", {})),
        "conventions": metric_conventions(),
        "checkpoints": numbering.figure(
            "3",
            f"The {score} of every kept checkpoint of every run on the validation set over "
            "training; the selected checkpoint of each run is ringed.",
            figures / "checkpoint_scores.png",
        )
        if (figures / "checkpoint_scores.png").is_file()
        else None,
    }

    runs_df = _read(results / "summary" / "runs.csv", text=["run_id", "status", "error"])
    failed = failed_frame(runs_df)
    failed_runs = (
        {
            "count": len(failed),
            "table": numbering.table(
                "4",
                f"The {plural(len(failed), 'run')} whose training failed, with the error of the "
                "last attempt.",
                failed,
            ),
        }
        if len(failed)
        else None
    )

    long_table = _read(tables / "hyperparameters.csv", text=["hyperparameter", "level"])
    hyperparameters = []
    for name in swept:
        rows = long_table[long_table["hyperparameter"] == name]
        hyperparameters.append(
            {
                "name": name,
                "table": numbering.table(
                    "4",
                    f"{sentence_case(score)} on the validation set per level of “{name}”.",
                    hyperparameter_frame(rows),
                ),
                "extremes": extremes(rows, higher),
            }
        )
    kruskal = None
    if swept and (tables / "kruskal.csv").is_file():
        kruskal_csv = _read(tables / "kruskal.csv", text=["hyperparameter", "best", "worst"])
        kruskal = numbering.table(
            "4",
            "Kruskal–Wallis test of the runs' scores across the levels of each swept "
            "hyperparameter, and the difference of the median score between the best and the "
            "worst level with its bootstrap 95 % confidence interval.",
            kruskal_frame(kruskal_csv),
            notes=[
                "Each run is one observation; with few runs per level the test has little power "
                "and undefined values are shown as “–”."
            ],
        )
    pairs_long = _read(tables / "pairs.csv", text=["a", "b", "a_level", "b_level"])
    pairs = []
    for (a, b), table in pairs_long.groupby(["a", "b"], sort=False):
        pairs.append(
            {
                "a": a,
                "b": b,
                "table": numbering.table(
                    "4",
                    f"{sentence_case(score)} on the validation set for “{a}” (rows) and “{b}” "
                    "(columns).",
                    pair_frame(table, a),
                    notes=[PAIR_NOTE],
                    group_header=[("", 1), (b, len(pair_grid(table).columns))],
                ),
            }
        )
    for entry in hyperparameters:
        name = entry["name"]
        hue = hue_partner(name, swept, configured_pairs(config, swept))
        entry["figure"] = numbering.figure(
            "4",
            f"Jitter plot of the {score} of every run on the validation set per level of "
            f"“{name}”" + (f", coloured by “{hue}”." if hue else "."),
            figures / f"jitter_{name}.png",
        )

    final = pd.read_csv(results / "summary" / "final.csv", keep_default_na=False)
    final_ids = final["run_id"].astype(str).tolist()
    best = _read(results / "tables" / "best_runs.csv", text=["run_id"])
    best_models = {
        "best_run": best["run_id"].iloc[0] if len(best) else None,
        "best_score": number(best["score"].iloc[0]) if len(best) else None,
        "table": numbering.table(
            "4",
            f"The {plural(len(best), 'best run')} by {score} on the validation set.",
            runs_frame(best),
        ),
        "final": numbering.table(
            "4", "The final models chosen on the validation set.", final_models_frame(final)
        ),
    }
    best_models["curves"] = numbering.figure(
        "4",
        "Training curves of the final models. Left: training loss as a rolling mean (dark line) "
        "with bands of one (dark) and two (light) standard deviations, validation loss as orange "
        "points; right: validation Dice per epoch.",
        figures / "training_curves.png",
    )

    per_patient = _read(tables / "final_per_patient.csv", text=["patient_id", "run_id", "split"])
    distribution = _read(tables / "slice_distribution.csv", text=["run_id", "split"])
    summary = _read(tables / "metrics_summary.csv", text=["run_id", "split", "space", "metric"])
    tests = _read(tables / "final_tests.csv", text=["split", "test", "a", "b"])
    classes = _read(
        tables / "class_summary.csv", text=["run_id", "split", "space", "class", "metric"]
    )
    final_splits = []
    for split in ("val", "test"):
        name = SPLIT_NAMES[split]
        entry: dict[str, Any] = {"split": split, "name": name}
        entry["distribution"] = numbering.table(
            "4",
            f"Distribution of the per-slice foreground Dice of the final models on the {name}.",
            distribution_frame(distribution[distribution["split"] == split]),
            notes=[
                "Slices where reference and prediction are both empty have no Dice: they are "
                "counted as undefined and left out of the statistics."
            ],
        )
        in_split = summary[summary["split"] == split]
        entry["metrics"] = []
        for space in sorted(dict.fromkeys(in_split["space"]), key=_space_key):
            entry["metrics"].append(
                numbering.table(
                    "4",
                    f"All per-patient foreground metrics of the final models on the {name} "
                    f"({space} space).",
                    metrics_frame(in_split[in_split["space"] == space], final_ids),
                    notes=["The format is “mean (median) ± std” over patients."],
                )
            )
        split_classes = classes[classes["split"] == split]
        entry["classes"] = numbering.table(
            "4",
            f"Per-class per-patient Dice, IoU and HD95 of the final models on the {name}, "
            "for every class a model predicts and the foreground (the union of its classes).",
            class_frame(split_classes, final_ids),
            notes=[
                "The format is “mean (median) ± std” over the patients; patients where a class "
                "is absent from both reference and prediction are counted but have no value."
            ],
        )
        entry["class_extremes"] = class_extremes(split_classes, final_ids)
        frame, wins = per_patient_frame(per_patient[per_patient["split"] == split], final_ids)
        notes = ["The format is “mean (median)” of the per-slice foreground Dice."]
        if len(final_ids) > 1:
            notes.append("The model with the highest mean Dice for the patient is in bold.")
        entry["table"] = numbering.table(
            "4",
            f"Mean and median Dice per slice of the final models for each patient of the {name}.",
            frame,
            notes=notes,
        )
        split_tests = tests[tests["split"] == split]
        entry["tests"] = (
            numbering.table(
                "4",
                f"Paired tests of the final models on the per-patient foreground Dice of the "
                f"{name}, with the median of the per-patient differences and its bootstrap 95 % "
                "confidence interval.",
                tests_frame(split_tests),
                notes=[
                    "Wilcoxon signed-rank for two models; for more, Friedman and pairwise "
                    "Wilcoxon tests with Holm's correction."
                ],
            )
            if len(split_tests)
            else None
        )
        entry["histogram"] = numbering.figure(
            "4",
            f"Histogram of the per-slice foreground Dice of each final model on the {name}; the "
            "orange line marks the median.",
            figures / f"histogram_{split}.png",
        )
        entry["figure"] = numbering.figure(
            "4",
            f"Dice per slice for each patient of the {name}, one panel per final "
            "model. The line in each box is the median, the box spans the 25% to 75% quantiles, "
            "the whiskers reach the furthest slice within 1.5 times the interquartile range and "
            "outliers beyond are marked with diamonds. Slices where reference and prediction are "
            "both empty have no Dice and are not shown.",
            figures / f"boxplot_{split}.png",
        )
        entry["n_patients"] = len(frame)
        entry["wins"] = wins
        final_splits.append(entry)

    outlines = []
    for run in final_ids:
        for png in sorted((results / "final" / run / "figures").glob("outlines_*.png")):
            _, _, tag, patient = png.stem.split("_", 3)
            tags = [t for t in tag.split("-") if t != "patient"]
            what = f"the {' and '.join(tags)} test patient by Dice" if tags else "a chosen patient"
            outlines.append(
                numbering.figure(
                    "4",
                    f"Final model {run} on {patient} ({what}): up to twelve linearly spaced slices "
                    "with the reference outlined in green and the prediction in orange.",
                    png,
                )
            )

    unlabelled = []
    for run in final_ids:
        png = results / "final" / run / "unlabelled.png"
        if png.is_file():
            unlabelled.append(
                numbering.figure(
                    "4",
                    f"Predictions of final model {run} for subjects without a reference: the "
                    "middle slice of each cropped image with the predicted outline in orange.",
                    png,
                )
            )

    appendix = {
        "runs": numbering.table(
            "A",
            f"All {plural(len(runs_df), 'run')} of the sweep with their validation scores "
            "(score: the selection score; Dice: per-patient foreground Dice of the selected "
            "checkpoint on the validation set).",
            runs_frame(runs_df.drop(columns="error")),
            long=True,
        ),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "sweep_yaml": yaml.safe_dump(sweep, sort_keys=False, allow_unicode=True),
        "provenance": numbering.table(
            "C",
            "Software versions, code revision and configuration hash.",
            provenance_frame(config, sweep),
        ),
    }
    by_origin = run_provenance_frame(results / "runs")
    appendix["runs_provenance"] = (
        numbering.table(
            "C",
            "The training runs by the code revision, configuration hash and torch version they "
            "were trained with (their provenance.json), and the devices they used.",
            by_origin,
        )
        if by_origin is not None
        else None
    )
    bench = benchmarks_frame(benchmarks or results.parent / "benchmarks")
    appendix["benchmarks"] = (
        numbering.table("C", "Runtime per rule from Snakemake's benchmark files.", bench)
        if bench is not None
        else None
    )

    report = config.get("report", {})
    return {
        "title": report.get("title", "Segmentation sweep"),
        "author": report.get("author", ""),
        "date": date or datetime.date.today().isoformat(),
        "score": score,
        "higher_is_better": higher,
        "swept": swept,
        "data": data,
        "preprocessing": preprocessing_text(config, any(run.params.get("inputs") for run in runs)),
        "preprocessing_figures": preprocessing_figures,
        "crop_tables": crop_tables,
        "kruskal": kruskal,
        "failed_runs": failed_runs,
        "outlines": outlines,
        "unlabelled": unlabelled,
        "methods": methods,
        "hyperparameters": hyperparameters,
        "pairs": pairs,
        "best_models": best_models,
        "final_splits": final_splits,
        "final_ids": final_ids,
        "appendix": appendix,
        "tables": numbering.tables,
        "figures": numbering.figures,
    }


def render_html(context: dict[str, Any], templates: Path = TEMPLATES) -> str:
    """The thesis as one HTML string (CSS inlined, images as data URIs)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(**context)


def render_pdf(html: str, out: Path) -> int:
    """Print the HTML to PDF with WeasyPrint; returns the number of pages."""
    import weasyprint  # only here: importing it loads fonts, which the HTML path does not need

    document = weasyprint.HTML(string=html).render()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    document.write_pdf(out)
    return len(document.pages)


def main(argv: list[str] | None = None) -> None:
    """Write the thesis as HTML and as PDF."""
    parser = argparse.ArgumentParser(prog="segsweep report", description=main.__doc__)
    parser.add_argument("--config-json", required=True, help="the whole validated config")
    parser.add_argument("--sweep-json", required=True, help="the sweep specification")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--templates", type=Path, default=TEMPLATES)
    parser.add_argument("--out-html", type=Path, default=Path("results/report/thesis.html"))
    parser.add_argument("--out-pdf", type=Path, default=Path("results/report/thesis.pdf"))
    parser.add_argument("--qc-subjects", nargs="*", default=[], help="subjects of the QC figures")
    args = parser.parse_args(argv)
    context = build_context(
        json.loads(args.config_json),
        json.loads(args.sweep_json),
        args.results,
        qc_subjects=args.qc_subjects,
    )
    html = render_html(context, args.templates)
    args.out_html.parent.mkdir(parents=True, exist_ok=True)
    args.out_html.write_text(html, encoding="utf-8")
    pages = render_pdf(html, args.out_pdf)
    print(f"wrote {args.out_html} and {args.out_pdf} ({pages} pages)")


if __name__ == "__main__":
    main()
