"""Public dataset layouts read as they come, and every dataset problem in one pass.

Unit tests read tiny Decathlon, nnU-Net v2 and MONAI-datalist datasets (tests/public_layouts.py)
and a manifest with six problems. The workflow tests run each layout through the real Snakefile
to the report with only `data.manifest` set among the data keys (classes, label values and
channel names come from the dataset), and the six-problem manifest with `on_invalid: skip`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml
from public_layouts import (
    CHANNELS,
    CLASSES,
    N_LABELLED,
    build_datalist,
    build_decathlon,
    build_nnunet,
    phantom,
)
from runs import snakemake
from test_brought_datasets import report_table

from segsweep.data.datasets import DATASET_FOLD, read_dataset
from segsweep.data.ingest import check_classes, read_channels
from segsweep.data.validate import examine, plan_subjects, stop_on_problems, subject_problems
from segsweep.errors import ConfigError, InputError
from segsweep.preprocess.split import split_subjects

REPO = Path(__file__).resolve().parents[1]
BUILDERS = {"decathlon": build_decathlon, "nnunet": build_nnunet, "datalist": build_datalist}


def _data(path: Path, **keys) -> dict:
    return {"manifest": str(path), "labels": None, "channels": None, "tolerance": 1e-3, **keys}


@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_each_layout_is_read_with_its_classes_channels_and_unlabelled_images(tmp_path, layout):
    path = BUILDERS[layout](tmp_path)
    dataset, labels, channels, problems = examine(_data(path))
    assert dataset.layout == layout and problems == []
    assert labels == CLASSES and channels == CHANNELS
    labelled = [s for s, row in dataset.subjects.items() if row["labelled"]]
    unlabelled = [s for s, row in dataset.subjects.items() if not row["labelled"]]
    assert len(labelled) == N_LABELLED and len(unlabelled) == 1
    for row in dataset.subjects.values():  # no `._` resource fork or .DS_Store became a case
        assert all(Path(p).is_file() and not Path(p).name.startswith(".") for p in row["images"])
    if layout == "decathlon":  # one 4D file per subject
        assert all(len(row["images"]) == 1 for row in dataset.subjects.values())
    else:  # one file per channel, in channel order
        row = dataset.subjects[labelled[0]]
        assert [Path(p).name[-11:] for p in row["images"]] == ["0000.nii.gz", "0001.nii.gz"]
    folds = {row["extra"].get(DATASET_FOLD) for row in dataset.subjects.values()}
    assert folds == ({"0", "1", None} if layout == "datalist" else {None})


def test_a_4d_decathlon_image_becomes_its_channels(tmp_path):
    """Channels last, as the Decathlon stores multi-modal images: each becomes one component,
    voxel for voxel, on the first three axes' grid."""
    folder = build_decathlon(tmp_path)
    image = read_channels([str(folder / "imagesTr" / "tiny_001.nii.gz")], "tiny_001")
    expected, _ = phantom(1)
    assert image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 2
    array = sitk.GetArrayFromImage(image)  # [z, y, x, c]
    np.testing.assert_allclose(array, expected.transpose(2, 1, 0, 3), rtol=1e-6)
    assert image.GetSpacing() == pytest.approx((1.5, 1.5, 4.0))


def test_regions_the_ignore_label_and_unnamed_classes_are_refused_by_name(tmp_path):
    folder = build_nnunet(tmp_path)
    description = json.loads((folder / "dataset.json").read_text())
    description["labels"] = {"background": 0, "whole": [1, 2], "core": 2}
    (folder / "dataset.json").write_text(json.dumps(description))
    with pytest.raises(InputError, match="label 'whole' is a region \\[1, 2\\]"):
        read_dataset(folder)
    description["labels"] = {"background": 0, "cyst": 1, "ignore": 3}
    (folder / "dataset.json").write_text(json.dumps(description))
    with pytest.raises(InputError, match="'ignore' label"):
        read_dataset(folder)
    datalist = build_datalist(tmp_path)
    content = json.loads(datalist.read_text())
    del content["labels"]
    datalist.write_text(json.dumps(content))
    with pytest.raises(ConfigError, match="data.labels.*names no classes"):
        examine(_data(datalist))
    assert examine(_data(datalist, labels={"cyst": 1}))[1] == {"cyst": 1}


def test_a_datalists_folds_are_the_cross_validation_folds():
    """Dataset folds are kept for the development subjects; the test split is drawn apart."""
    manifest = pd.DataFrame(
        {
            "subject_id": [f"s{i}" for i in range(9)],
            "labelled": [True] * 9,
            DATASET_FOLD: [i % 3 for i in range(9)],
        }
    )
    fractions = {"train": 0.45, "val": 0.22, "test": 0.33}
    splits = split_subjects(manifest, fractions, None, 0, folds=3)
    development = splits[splits["split"].isin(["train", "val"])]
    given = dict(zip(manifest["subject_id"], manifest[DATASET_FOLD], strict=True))
    assert len(development) == 6 and splits["fold"][splits["split"] == "test"].isna().all()
    assert [given[s] for s in development["subject_id"]] == development["fold"].tolist()
    with pytest.raises(ConfigError, match="the dataset's own folds, \\[0, 1, 2\\]"):
        split_subjects(manifest, fractions, None, 0, folds=2)


def test_a_declared_class_without_any_voxel_is_an_error_naming_it():
    records = [
        {"valid": True, "voxels": {"brain": 900, "femur": 0}},
        {"valid": True, "voxels": {"brain": 700, "femur": 0}},
        {"valid": True, "voxels": None},  # unlabelled
    ]
    with pytest.raises(
        InputError, match="class 'femur' \\(label 2\\) has no voxel in any of the 2"
    ):
        check_classes(records, {"brain": 1, "femur": 2})
    check_classes(records, {"brain": 1})


# ---------------------------------------------------------------------------------------------
# six problems in one pass


def _nifti(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 4.0), origin=(0.0, 0.0, 0.0)):
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    nibabel.save(nibabel.Nifti1Image(array, affine), path)


PROBLEMS = {  # subject → (file, what the problem says)
    "dup": ("manifest.csv", "duplicate subject id (lines 7, 8)"),
    "gone": ("gone_t2.nii.gz", "file not found"),
    "garbled": ("garbled_t2.nii.gz", "unreadable header"),
    "small": (
        "small_seg.nii.gz",
        "shape mismatch: mask size [14, 24, 6] != image size [28, 24, 6]",
    ),
    "coarse": ("coarse_seg.nii.gz", "geometry mismatch: spacing differs by 0.5"),
    "shifted": ("shifted_adc.nii.gz", "channel geometry mismatch: origin differs by 3"),
}


def build_six_problems(root: Path) -> Path:
    """A two-channel manifest of five good subjects and six with one problem each."""
    folder = root / "six"
    rows = []
    subjects = [f"ok{i}" for i in range(5)] + ["dup", "dup", *list(PROBLEMS)[1:]]
    for i, sid in enumerate(subjects):
        image, labels = phantom(i)
        stem = f"{sid}{i}" if sid == "dup" else sid  # two files, one id
        t2, adc, seg = (f"{stem}_{part}.nii.gz" for part in ("t2", "adc", "seg"))
        _nifti(folder / t2, image[..., 0])
        _nifti(folder / adc, image[..., 1], origin=(3.0, 0, 0) if sid == "shifted" else (0, 0, 0))
        spacing = (2.0, 1.5, 4.0) if sid == "coarse" else (1.5, 1.5, 4.0)
        _nifti(folder / seg, labels[::2] if sid == "small" else labels, spacing)
        rows.append({"subject_id": sid, "t2": t2, "adc": adc, "mask": seg})
    (folder / "gone_t2.nii.gz").unlink()
    (folder / "garbled_t2.nii.gz").write_bytes(b"not a nifti header at all" * 20)
    manifest = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def _six_config(root: Path, manifest: Path) -> Path:
    data = {"manifest": str(manifest), "labels": CLASSES, "channels": ["t2", "adc"]}
    config = {"data": {"source": "manifest", **data}}
    path = root / "six.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_six_problems_come_in_one_validate_table(tmp_path):
    manifest = build_six_problems(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "segsweep",
            "validate",
            "--configfile",
            _six_config(tmp_path, manifest),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert "a manifest CSV; 10 subjects" in lines[0] and lines[1] == "6 problems:"
    table = lines[3:]
    assert len(table) == 6
    for subject, (file, problem) in PROBLEMS.items():
        (line,) = [line for line in table if line.startswith(f"{subject} ")]
        assert file in line and problem in line, line
    # the workflow's way: the listing when it plans, each subject's job, one table
    plan = plan_subjects(_data(manifest, labels=CLASSES, channels=["t2", "adc"]))
    found = plan.problems + [
        problem
        for subject, row in plan.subjects.items()
        for problem in subject_problems(subject, row, plan.labels, plan.channels, 1e-3)
    ]
    with pytest.raises(InputError, match="6 problems") as info:
        stop_on_problems(str(manifest), found)
    assert all(subject in str(info.value) for subject in PROBLEMS)
    valid = {s for s in plan.subjects if not any(p.subject == s for p in found)}
    assert sorted(valid) == [f"ok{i}" for i in range(5)]
    assert sorted({p.subject for p in found}) == sorted(PROBLEMS)


@pytest.mark.workflow
def test_one_run_stops_with_the_whole_table(tmp_path):
    """The workflow gathers the same checks: one run lists all six, not the first."""
    manifest = build_six_problems(tmp_path)
    work = tmp_path / "work"
    (work / "config").mkdir(parents=True)
    (work / "config" / "sweep.yaml").write_text("grids: {one: {labels: [separate]}}\n")
    config = _six_config(tmp_path, manifest)
    result = snakemake(work, "results/data/manifest.csv", configfile=config)
    assert result.returncode != 0
    assert "6 problems" in result.stderr + result.stdout
    for subject, (_, problem) in PROBLEMS.items():
        assert problem in result.stderr + result.stdout, subject


# ---------------------------------------------------------------------------------------------
# through the workflow


def _tiny(work: Path, data: dict, folds: int = 0) -> Path:
    """The data keys given, and the smallest training that reports."""
    config = {
        "data": {"source": "manifest", **data},
        "preprocess": {"n4": {"iterations": [10]}, "crop": {"size": 16, "slices": 4}},
        "split": {"folds": folds},
        "train": {
            "depth": 2,
            "base_channels": 4,
            "epochs": 2,
            "checkpoint_every": 1,
            "batch_size": 4,
            "lr": 0.01,
        },  # fmt: skip
        "report": {"pairs": []},
        "threads": 1,
    }
    (work / "config").mkdir(parents=True)
    (work / "config" / "sweep.yaml").write_text("grids: {one: {labels: [separate]}}\n")
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    return work / "config.yaml"


@pytest.fixture(scope="module")
def run_layout(tmp_path_factory):
    """layout → (its dataset's path, the work folder of its one workflow run), run once."""
    done: dict[str, tuple[Path, Path]] = {}

    def run(layout: str) -> tuple[Path, Path]:
        if layout not in done:
            root = tmp_path_factory.mktemp(layout)
            path = BUILDERS[layout](root / "data")
            work = root / "work"
            config = _tiny(work, {"manifest": str(path)}, folds=2 if layout == "datalist" else 0)
            result = snakemake(work, configfile=config)
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
            done[layout] = path, work
        return done[layout]

    return run


LAYOUT_NAMES = {
    "decathlon": "Medical Segmentation Decathlon dataset",
    "nnunet": "nnU-Net v2 raw dataset",
    "datalist": "MONAI datalist",
}
UNLABELLED = {"decathlon": "tiny_006", "nnunet": "case06", "datalist": "s6"}


@pytest.mark.workflow
@pytest.mark.parametrize("layout", sorted(BUILDERS))
def test_a_layout_runs_to_the_report_naming_what_it_read(run_layout, layout):
    path, work = run_layout(layout)
    html = (work / "results/report/thesis.html").read_text()
    assert f"The subjects are those of the {LAYOUT_NAMES[layout]} {path}." in html
    assert "the channels T2, ADC and the classes cyst (label 1), nodule (label 2)" in html
    (final,) = pd.read_csv(work / "results/summary/final.csv")["run_id"]
    test = pd.read_csv(work / f"results/final/{final}/test/per_patient.csv")
    assert set(test["class"]) >= set(CLASSES) and not {"femur", "tibia"} & set(test["class"])
    splits = pd.read_csv(work / "results/splits/splits.csv", dtype={"subject_id": str})
    unlabelled = splits.loc[splits["split"] == "unlabelled", "subject_id"].tolist()
    assert unlabelled == [UNLABELLED[layout]]
    assert (work / f"results/final/{final}/unlabelled/{unlabelled[0]}.nii.gz").is_file()


@pytest.mark.workflow
def test_a_datalists_folds_reach_the_runs(run_layout):
    _, work = run_layout("datalist")
    splits = pd.read_csv(work / "results/splits/splits.csv", dtype={"subject_id": str})
    development = splits[splits["split"].isin(["train", "val"])]
    given = {f"s{i}": i % 2 for i in range(N_LABELLED)}
    assert [given[s] for s in development["subject_id"]] == development["fold"].astype(int).tolist()
    for fold in (0, 1):
        run = work / f"results/runs/labels-separate_fold-{fold}/subjects.json"
        expected = development.loc[development["fold"] == fold, "subject_id"]
        assert json.loads(run.read_text())["val"] == sorted(expected)


@pytest.mark.workflow
def test_skip_leaves_the_six_out_and_lists_them(tmp_path):
    manifest = build_six_problems(tmp_path)
    work = tmp_path / "work"
    data = {"manifest": str(manifest), "labels": CLASSES, "channels": ["t2", "adc"],
            "on_invalid": "skip"}  # fmt: skip
    result = snakemake(work, configfile=_tiny(work, data))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    dropped = pd.read_csv(work / "results/data/dropped.csv", keep_default_na=False)
    for subject, (file, problem) in PROBLEMS.items():
        (row,) = dropped[dropped["subject_id"] == subject].itertuples()
        assert file in row.file and problem in row.problem
    html = (work / "results/report/thesis.html").read_text()
    assert "6 subjects dropped as invalid" in html
    assert all(problem.split(" (")[0] in html for _, problem in PROBLEMS.values())
    splits = pd.read_csv(work / "results/splits/splits.csv")
    assert sorted(splits["subject_id"]) == [f"ok{i}" for i in range(5)]


# ---------------------------------------------------------------------------------------------
# a fair nnU-Net baseline


@pytest.mark.workflow
def test_export_nnunet_writes_our_cohort_and_folds_in_nnunets_layout(run_layout, tmp_path):
    """nnU-Net v2's documented raw layout (imagesTr/{case}_{XXXX}, labelsTr/{case},
    imagesTs, dataset.json) with our subject ids, consecutive labels, and splits_final.json
    giving our folds; read back by our own nnU-Net reader without a problem."""
    _, work = run_layout("datalist")
    out = tmp_path / "Dataset501_Ours"
    result = subprocess.run(
        [sys.executable, "-m", "segsweep", "export-nnunet", str(out)],
        capture_output=True,
        text=True,
        cwd=work,
    )
    assert result.returncode == 0, result.stderr
    splits = pd.read_csv(work / "results/splits/splits.csv", dtype={"subject_id": str})
    development = splits[splits["split"].isin(["train", "val"])]
    others = splits.loc[~splits["split"].isin(["train", "val"]), "subject_id"]
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T2", "1": "ADC"}
    assert dataset["labels"] == {"background": 0, "cyst": 1, "nodule": 2}
    assert dataset["numTraining"] == len(development) and dataset["file_ending"] == ".nii.gz"
    expected = {f"{s}_{c:04d}.nii.gz" for s in development["subject_id"] for c in (0, 1)}
    assert {p.name for p in (out / "imagesTr").iterdir()} == expected
    assert {p.name for p in (out / "labelsTr").iterdir()} == {
        f"{s}.nii.gz" for s in development["subject_id"]
    }
    assert {p.name for p in (out / "imagesTs").iterdir()} == {
        f"{s}_{c:04d}.nii.gz" for s in others for c in (0, 1)
    }
    folds = json.loads((out / "splits_final.json").read_text())
    assert len(folds) == 2
    for k, fold in enumerate(folds):
        in_fold = development["fold"].astype(int) == k
        assert fold["val"] == sorted(development.loc[in_fold, "subject_id"])
        assert fold["train"] == sorted(development.loc[~in_fold, "subject_id"])
    dataset, labels, channels, problems = examine(_data(out))
    assert dataset.layout == "nnunet" and problems == [] and channels == CHANNELS
    one = development["subject_id"].iloc[0]
    exported = sitk.ReadImage(str(out / "labelsTr" / f"{one}.nii.gz"))
    ours = sitk.ReadImage(str(work / f"results/data/{one}/mask.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(exported), sitk.GetArrayFromImage(ours))


@pytest.mark.workflow
def test_an_external_prediction_folder_is_scored_beside_the_final_models(run_layout, tmp_path):
    """Our final model's own native predictions, copied as an external method's output folder
    (label values renumbered as an nnU-Net model trained on export-nnunet output gives them,
    named in its dataset.json), score exactly as the model does, in the report's test tables
    and its paired test (difference 0)."""
    _, work = run_layout("decathlon")
    (model,) = pd.read_csv(work / "results/summary/final.csv")["run_id"]
    folder = tmp_path / "nnunet_predictions"
    folder.mkdir()
    for path in (work / f"results/final/{model}/predictions_native").glob("*.nii.gz"):
        image = sitk.ReadImage(str(path))
        renumbered = sitk.ChangeLabel(image, changeMap={1: 2, 2: 1})
        sitk.WriteImage(renumbered, str(folder / path.name))
    labels = {"background": 0, "nodule": 1, "cyst": 2}  # the other way round from ours
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    config = yaml.safe_load((work / "config.yaml").read_text())
    config["final"] = {"external": {"nnunet": str(folder)}}
    (work / "external.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(work, configfile=work / "external.yaml")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scored = pd.read_csv(work / "results/external/nnunet/test/per_patient.csv")
    ours = pd.read_csv(work / f"results/final/{model}/test/per_patient.csv")
    ours = ours[ours["space"] == "native"]
    merged = scored.merge(ours, on=["patient_id", "class"], suffixes=("", "_ours"))
    assert len(merged) == len(ours) > 0
    np.testing.assert_allclose(merged["dice"], merged["dice_ours"], equal_nan=True)
    html = (work / "results/report/thesis.html").read_text()
    native = report_table(html, "on the test set (native space), beside the external methods")
    assert native[model].tolist() == native["nnunet"].tolist()
    classes = report_table(
        html, "of the final models on the test set, for every class a model predicts"
    )
    assert "nnunet" in set(classes["Model"])
    tests = report_table(html, "Paired tests of the final models and the external method")
    assert len(tests) == 1
    assert (work / "results/figures/boxplot_test_native.png").is_file()
    assert "one box per final model and external method" in html


def test_planning_reads_only_the_listing(tmp_path):
    """Planning (and every job, which parses the Snakefile again) opens no file: the six
    subjects' header problems are left to their jobs, the listing's duplicate is found."""
    manifest = build_six_problems(tmp_path)
    data = _data(manifest, labels=CLASSES, channels=["t2", "adc"], on_invalid="skip")
    plan = plan_subjects(data)
    assert [p.subject for p in plan.problems] == ["dup"]
    assert "gone" in plan.subjects and "dup" not in plan.subjects
