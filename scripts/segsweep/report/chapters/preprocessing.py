"""Chapter 2, Preprocessing: what was done to every image, written from the configuration, the
crop's centre errors and kept fractions, and the N4 and crop QC figures of one subject per
source. When the crop cuts labelled structure (a labelled subject keeps less than
`crop_plan.KEPT_MINIMUM` of a class), the chapter opens with a warning naming each subject,
class and kept share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from markupsafe import Markup

from segsweep.channels import channel_names
from segsweep.numerals import number, plural, sentence_case, verb
from segsweep.preprocess.crop_plan import AUTO, KEPT_MINIMUM, cut_classes, resolve_centre
from segsweep.report.document import Chapter, Figure, Section, Table, text
from segsweep.report.inputs import ReportInputs, read_table


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


def resolved_crop(config: dict[str, Any]) -> dict[str, Any]:
    """config["preprocess"]["crop"] with `centre: auto` resolved for the data source."""
    crop = dict(config.get("preprocess", {}).get("crop", {}))
    if crop.get("centre") == AUTO:
        source = config.get("data", {}).get("source", "synthetic")
        crop["centre"] = resolve_centre(AUTO, source)
    return crop


def window_phrase(crop: dict[str, Any], window_mm: float | None = None) -> str:
    """The crop window in words: its configured side, or, for `window_mm: auto`, the side it
    was planned at (`window_mm`, from the crop records; unsaid when unknown)."""
    if crop.get("window_mm") != AUTO:
        return f"a square in-plane window of {crop.get('window_mm')} mm"
    return "a square in-plane window" + (f" of {window_mm:g} mm" if window_mm is not None else "")


def plan_sentence(crop: dict[str, Any]) -> str:
    """How a planned window (`window_mm: auto`) was sized; empty for a configured one."""
    if crop.get("window_mm") != AUTO:
        return ""
    margin = float(crop.get("margin", 0.1))
    return (
        " The window was planned from the data: the smallest square that, around each training "
        "and validation subject's own crop centre, holds every labelled voxel, widened by "
        f"{100 * margin:g} % on each side (test subjects did not enter the plan)."
    )


def preprocessing_text(
    config: dict[str, Any], inputs_used: bool = False, window_mm: float | None = None
) -> list[str]:
    """The preprocessing chapter as paragraphs, written from config["preprocess"] and the labels
    (`window_mm`: the side a planned window got)."""
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
    crop = resolved_crop(config)
    if crop:
        size = crop.get("size")
        paragraphs.append(
            f"Each volume was cropped to {window_phrase(crop, window_mm)} "
            f"around {centre_phrase(crop)} and resampled to {size} × {size} "
            f"pixels.{plan_sentence(crop)} The number of slices was harmonised to "
            f"{crop.get('slices')} by padding to a "
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
    """What the crop window is centred on, per preprocess.crop.centre (segsweep.preprocess.crop)."""
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
    """How the mask-derived reference centre is defined (segsweep.preprocess.crop.mask_centre)."""
    if len(labels) == 1:
        return "With a single class, the reference centre is the centroid of all labelled voxels."
    return (
        "The reference centre is the centroid of the zone where two classes meet; where only one "
        "class is present or no classes meet, it is the centroid of all labelled voxels."
    )


def interface_note(labels: dict[str, int], knee: bool) -> str:
    """Where two classes meet, for several classes (segsweep.preprocess.crop.mask_centre); the
    knee's joint gap named only for the synthetic knee cohort (a brought dataset's report names
    no class it does not have)."""
    if len(labels) < 2:
        return ""
    example = " (for the knee, across the joint gap between femur and tibia)" if knee else ""
    return (
        " The zone is the surface midway between the two classes with the widest interface, up "
        f"to 16 mm apart{example}."
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


def _kept_cell(value: float) -> str:
    """A kept fraction, marked (bold, in the warning's colour) when the crop cuts the class
    (below KEPT_MINIMUM)."""
    if pd.notna(value) and value < KEPT_MINIMUM:
        return Markup('<span class="cut">{}</span>').format(number(value))
    return number(value)


def kept_fraction_frame(kept: pd.DataFrame) -> pd.DataFrame:
    """Kept fraction per subject and class (kept_fraction.csv) with mean and minimum rows;
    classes absent from a subject are a dash and left out of the summary; fractions of a cut
    class (below KEPT_MINIMUM) are marked."""
    classes = [c for c in kept.columns if c != "subject_id"]
    numbers = kept[classes].apply(pd.to_numeric, errors="coerce")
    rows = [
        [str(subject), *(_kept_cell(v) for v in row)]
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


@dataclass(eq=False)
class WarningSection(Section):
    """An unnumbered section the template draws as a warning box (`css`)."""

    numbered: bool = False
    css: str = "warning"


def kept_share(value: float) -> str:
    """A kept fraction as a percentage with one decimal, rounded down (0.9899 → "98.9 %", never
    "99.0 %" for a share under 99 %)."""
    return f"{math.floor(1000 * value + 1e-9) / 10:.1f} %"


LISTED_CUTS = 12  # the warning names at most this many cuts, the kept-fraction table all


def crop_warning(
    kept: pd.DataFrame, table: Table | None = None, crop: dict[str, Any] | None = None
) -> WarningSection | None:
    """The warning that opens the chapter when the crop cuts labelled structure: every
    (subject, class) keeping less than KEPT_MINIMUM of its voxels, smallest first, with its kept
    share; None when nothing is cut."""
    cut = cut_classes(kept)
    if cut.empty:
        return None
    subjects = cut["subject_id"].nunique()
    listed = [
        f"{name} of {subject} ({kept_share(value)})"
        for subject, name, value in cut.head(LISTED_CUTS).itertuples(index=False)
    ]
    more = len(cut) - len(listed)
    items = "; ".join(listed) + (
        f"; and {plural(more, 'more class', 'more classes')}" if more else ""
    )
    labelled = kept["subject_id"].nunique()
    template = (
        "The crop window cuts labelled structure: for {n} of {total} labelled subjects it keeps "
        "less than {minimum} of a class — {items}"
        + (" (marked in {table})" if table is not None else "")
        + ". The network never sees the voxels outside the window, so scores in the cropped "
        "space overstate those against the original masks for these subjects, and native-space "
        "predictions miss what was cut. "
        + (
            "The window was planned from the training and validation subjects, so these reach "
            "further from their crop centre than any of those: raise preprocess.crop.margin, "
            "or check their crop centres (preprocess.crop.centre and the centre errors)."
            if (crop or {}).get("window_mm") == AUTO
            else "Enlarge preprocess.crop.window_mm or set it to “auto” (planned from the "
            "labelled extents), or check the crop centre (preprocess.crop.centre and the centre "
            "errors)."
        )
    )
    paragraph = text(
        template,
        n=subjects,
        total=labelled,
        minimum=f"{100 * KEPT_MINIMUM:g} %",
        items=items,
        table=table,
    )
    return WarningSection("crop-cuts", "Warning: the crop cuts labelled structure", [paragraph])


def planned_window(centre: pd.DataFrame | None) -> float | None:
    """The crop window the subjects were cropped with (the centre-error table's `window_mm`,
    from their crop.json), when there is one."""
    if centre is None or "window_mm" not in centre:
        return None
    windows = pd.to_numeric(centre["window_mm"], errors="coerce").dropna().unique()
    return float(windows[0]) if len(windows) == 1 else None


def _centre_table(inputs: ReportInputs) -> pd.DataFrame | None:
    if inputs.centre_error is None:
        return None
    return read_table(inputs.centre_error, text=["subject_id", "method"])


def _crop_tables(
    inputs: ReportInputs, crop: dict[str, Any], centre: pd.DataFrame | None
) -> tuple[list, WarningSection | None]:
    """The centre-error and kept-fraction tables with their sentences (what exists of them),
    and the warning when the crop cuts labelled structure."""
    labels = inputs.config.get("data", {}).get("labels") or {}
    knee = inputs.config.get("data", {}).get("source") == "synthetic"
    blocks: list = []
    warning = None
    if centre is not None:
        if len(centre):
            table = Table.of(
                "centre-error",
                f"Distance of the crop centre ({centre_phrase(crop)}) from the reference centre "
                "derived from the mask, per labelled subject, and its offset along each axis "
                "(mm).",
                centre_error_frame(centre),
                notes=[
                    f"{reference_centre_note(labels)}{interface_note(labels, knee)} Max is the "
                    "largest error and the largest "
                    "absolute offset; “–” marks a subject without a reference centre."
                ],
            )
            summary = centre_summary(centre)
            found = (
                f": {summary['mean']} mm on average over {summary['n']} subjects and at most "
                f"{summary['max']} mm ({summary['worst']})"
                if summary
                else ""
            )
            blocks += [
                text(
                    "{table} gives, for every labelled subject, the distance between {what} and "
                    "the reference centre derived from its mask{found}.",
                    table=table,
                    what=centre_phrase(crop),
                    found=found,
                ),
                table,
            ]
    if inputs.kept_fraction is not None:
        kept = read_table(inputs.kept_fraction, text=["subject_id"])
        if len(kept) and len(kept.columns) > 1:
            table = Table.of(
                "kept-fraction",
                "Fraction of each class's voxels inside the crop window, per labelled subject.",
                kept_fraction_frame(kept),
                notes=["“–” marks a class absent from the subject's mask."],
            )
            warning = crop_warning(kept, table, crop)
            summary = kept_summary(kept)
            smallest = (
                f"; the smallest fraction is {summary['min']} ({summary['class']} of "
                f"{summary['subject']})"
                if summary
                else ""
            )
            blocks += [
                text(
                    "{table} shows how much of each class the crop window keeps{smallest}.",
                    table=table,
                    smallest=smallest,
                ),
                table,
            ]
    return blocks, warning


def _qc_figures(inputs: ReportInputs, crop: dict[str, Any]) -> list[Figure]:
    figures = []
    for subject, png in inputs.n4_qc.items():
        figures.append(
            Figure.of(
                f"n4-{subject}",
                f"N4 bias field correction of {subject}: the middle slice before correction, the "
                "estimated multiplicative bias field, and after correction.",
                png,
            )
        )
        if subject in inputs.crop_qc:
            figures.append(
                Figure.of(
                    f"crop-{subject}",
                    f"Crop of {subject}: the N4-corrected middle slice with the crop centre "
                    f"({centre_phrase(crop)}) and the square crop window, beside the cropped "
                    "slice.",
                    inputs.crop_qc[subject],
                )
            )
    return figures


def chapter(inputs: ReportInputs, inputs_used: bool) -> Chapter:
    """`inputs_used`: whether runs choose their input channels (the sweep's `inputs`)."""
    crop = resolved_crop(inputs.config)
    centre = _centre_table(inputs)
    paragraphs = preprocessing_text(inputs.config, inputs_used, planned_window(centre))
    tables, warning = _crop_tables(inputs, crop, centre)
    blocks: list = [warning] if warning is not None else []
    blocks += [text(p) for p in paragraphs] + tables
    figures = _qc_figures(inputs, crop)
    if figures:
        blocks.append(
            text(
                "Quality control: {figures} {shows} the bias field correction and the crop of "
                "one subject per source.",
                figures=figures,
                shows=verb(len(figures), "shows", "show"),
            )
        )
        blocks += figures
    return Chapter("preprocessing", "2", "Preprocessing", blocks)
