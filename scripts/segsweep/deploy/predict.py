"""`segsweep predict --model M.zip --input PATH... --output DIR`: a model package on new scans.

For each case (`segsweep.deploy.cases`) it writes, in the scan's own geometry (size, spacing,
origin and direction as read): the label map `DIR/<case>.nii.gz` (the data's label values),
the uncertainty map `DIR/<case>_uncertainty.nii.gz` (normalised entropy of the fold-averaged
probabilities, 0–1) and with `--probabilities` the class probabilities
`DIR/<case>_probabilities.nii.gz` (one component per class, background first); then
`DIR/qc.csv`, one row per case (`segsweep.deploy.qc`; a case that could not be read or
predicted has flag True and its error as the reason). An unreadable case prints one error line
and the others complete; the exit status is 1 when any case failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from segsweep.deploy import classification_predict, qc
from segsweep.deploy.archive import open_archive
from segsweep.deploy.cases import find_cases
from segsweep.deploy.predictor import Predictor
from segsweep.errors import InputError
from segsweep.io.images import write_image

# what one case may raise without stopping the others: bad input, what ITK cannot read or
# resample, a scan the model cannot take (its channels)
CASE_ERRORS = (InputError, RuntimeError, ValueError)


def predict_cases(
    predictor: Predictor,
    inputs: list[str | Path],
    out_dir: str | Path,
    probabilities: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every case of `inputs` into `out_dir`; return (and write) qc.csv's table."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    channels = predictor.manifest["channels"]
    cases, problems = find_cases(inputs, len(channels), channels)
    rows = []
    for what, reason in problems:
        print(f"error: {what}: {reason}", file=sys.stderr)
        rows.append(_failed(Path(str(what)).name, reason))
    for case in tqdm(cases, desc="cases", unit="case", disable=not progress, file=sys.stderr):
        try:
            image = predictor.read(case.channels, case.name)
            prediction = predictor.predict(image, probabilities)
            write_image(prediction.labels, out_dir / f"{case.name}.nii.gz")
            write_image(prediction.uncertainty, out_dir / f"{case.name}_uncertainty.nii.gz")
            if prediction.probabilities is not None:
                path = out_dir / f"{case.name}_probabilities.nii.gz"
                write_image(prediction.probabilities, path)
        except CASE_ERRORS as err:
            tqdm.write(f"error: {case.name}: {err}", file=sys.stderr)  # on its own line
            rows.append(_failed(case.name, str(err)))
            continue
        rows.append({"case": case.name, **prediction.qc})
    table = pd.DataFrame(rows, columns=qc.columns(predictor.manifest["classes"]))
    table = table.sort_values("case", kind="stable").reset_index(drop=True)
    table.to_csv(out_dir / "qc.csv", index=False)
    return table


def _failed(case: str, reason: str) -> dict[str, object]:
    return {"case": case, "flag": True, "reason": f"not predicted: {reason}"}


def main(argv: list[str] | None = None) -> None:
    """Segment new scans with a model package, each in its own geometry, with QC (a
    classification package: classify radiographs per image and per study)."""
    parser = argparse.ArgumentParser(prog="segsweep predict", description=main.__doc__)
    parser.add_argument("--model", required=True, type=Path, help="the package zip")
    parser.add_argument(
        "--input",
        required=True,
        nargs="+",
        help="segmentation: image files (.nii, .nii.gz, .mha, .mhd), DICOM series folders, "
        "folders of them, or a manifest CSV (subject_id and the channels' columns); "
        "classification: image files (PNG, JPEG, DICOM, …: each its own study), folders of "
        "them, or a manifest CSV (image, study_id, patient_id; optionally label, study_type, "
        "image_id)",
    )
    parser.add_argument("--output", required=True, type=Path, help="folder for the results")
    parser.add_argument(
        "--probabilities",
        action="store_true",
        help="also write them (segmentation; a classification's tables always hold them)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        task = open_archive(args.model).manifest.get("task")
        if task == "classification":
            classification_predict.run(args)
            return
        predictor = Predictor.load(args.model, args.device)
    except (InputError, ValueError) as err:
        sys.exit(f"error: {err}")
    table = predict_cases(predictor, args.input, args.output, args.probabilities)
    failed = table["reason"].fillna("").str.startswith("not predicted")
    flagged = int(table["flag"].astype(bool).sum()) - int(failed.sum())
    print(
        f"{len(table) - int(failed.sum())} of {len(table)} cases predicted into {args.output}; "
        f"{flagged} flagged by QC (qc.csv)"
    )
    sys.exit(1 if failed.any() else 0)


if __name__ == "__main__":
    main()
