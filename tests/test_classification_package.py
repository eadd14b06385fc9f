"""A classification model package (segsweep.deploy.classification, classification_predict): built
by `segsweep package` from a final model's files (two fold classifiers, their selections, the
models.json of the workflow's own final test), its predictions on the same radiographs — as
image files and as a manifest — equal the final test's per study (probability, class at the
packaged threshold) and per image, for the mean and the max study rule; its ONNX networks match
PyTorch; the README snippet gives a study's probability; a broken package is one error line;
a study with an unreadable image is left out and the others predicted."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from onnx_runtime import run_onnx
from torch import nn

from segsweep.deploy import package, predict
from segsweep.deploy.archive import FORMAT, open_archive
from segsweep.deploy.classification import requested
from segsweep.deploy.classification_predict import (
    ClassificationPredictor,
    find_images,
    predict_images,
)
from segsweep.evaluate import classify
from segsweep.evaluate.predictions import study_table
from segsweep.evaluate.probabilities import ensemble_probabilities
from segsweep.io.image_sets import read_image_set
from segsweep.io.records import write_json
from segsweep.model.checkpoints import save_checkpoint
from segsweep.model.classifiers import build_classifier, resize_images
from segsweep.preprocess.images import pack_split

torch.set_num_threads(1)
CLASSES = ["normal", "abnormal"]
RUN = "cfg"
FOLDS = [f"{RUN}_fold-0", f"{RUN}_fold-1"]
SIZE, INPUT_SIZE = 32, 40
TOLERANCE = 1e-4
CONFIGS = Path(__file__).resolve().parents[1] / "config"


def _radiographs(folder: Path) -> pd.DataFrame:
    """Ten studies of 1–3 radiographs (non-square; abnormal: a bright block; one RGB JPEG) of
    five patients, as images.csv lists them."""
    rng = np.random.default_rng(3)
    rows = []
    for p in range(5):
        for s in range(2):
            study, label = f"p{p}_s{s}", CLASSES[(p + s) % 2]
            for i in range(1 + (p + s) % 3):
                pixels = rng.integers(20, 120, size=(44 + 4 * i, 36)).astype(np.uint8)
                if label == "abnormal":
                    pixels[10 : 18 + 3 * p, 8:20] = 230
                name = f"{study}_i{i}.png"
                image = sitk.GetImageFromArray(pixels)
                if (p, s, i) == (1, 0, 0):
                    name = f"{study}_i{i}.jpg"
                    image = sitk.GetImageFromArray(np.stack([pixels] * 3, axis=-1), True)
                sitk.WriteImage(image, str(folder / name))
                rows.append(
                    {
                        "image_id": f"{study}_i{i}",
                        "image": str(folder / name),
                        "path": name,
                        "label": label,
                        "study_id": study,
                        "patient_id": f"p{p}",
                        "study_type": "XR_WRIST",
                    }
                )
    return pd.DataFrame(rows)


def _trained_like(model: nn.Module, seed: int) -> nn.Module:
    """A classifier whose batch-norm statistics are away from their initial identity."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    return model.eval()


def _fold_runs(results: Path) -> dict[str, tuple[Path, Path]]:
    """Two fold runs of one checkpoint each: selection.json, index.json, provenance.json."""
    hp = {"model": "resnet18", "dropout": 0.0, "input_size": INPUT_SIZE}
    meta = {
        "hp": hp,
        "classes": CLASSES,
        "label_mode": "classification",
        "in_channels": 1,
        "out_channels": 2,
        "task": "classification",
        "size": SIZE,
        "input_size": INPUT_SIZE,
    }
    members = {}
    for fold, run in enumerate(FOLDS):
        folder = results / "runs" / run
        torch.manual_seed(fold)
        model = _trained_like(build_classifier(hp, 1, 2), fold)
        name = f"epoch-{3 + fold:04d}.pt"
        save_checkpoint(folder / "checkpoints" / name, model, meta, 3 + fold, 30 + fold)
        entry = {"file": name, "epoch": 3 + fold, "step": 30 + fold}
        write_json(folder / "checkpoints" / "index.json", {"checkpoints": [entry]})
        selected = {**entry, "score": 0.9, "threshold": 0.5}
        write_json(folder / "selection.json", {"scores": [selected], "selected": selected})
        write_json(folder / "provenance.json", {"config_hash": "hash0"})
        members[run] = (folder / "selection.json", folder / "checkpoints" / "index.json")
    return members


def _validation(results: Path, test: Path, checkpoints: list[Path], how: str) -> list[Path]:
    """The runs' validation per_study.csv, made so that Youden's threshold falls between two of
    the test studies' probabilities (half of them above it)."""
    images = read_image_set(test)
    probabilities = ensemble_probabilities(checkpoints, images.images, CLASSES, "cpu")
    ids = pd.DataFrame({"study_id": images.study_id, "p_abnormal": probabilities[:, 1]})
    ids = ids.assign(patient_id="x", study_type="", true="normal")
    q = np.sort(study_table(ids, CLASSES, how)["p_abnormal"].to_numpy())
    half = len(q) // 2
    assert q[half] - q[half - 1] > 1e-4  # the networks tell the studies apart
    middle = (q[half - 1] + q[half]) / 2
    scores = [*q[:half], middle, *q[half:]]
    truth = ["normal"] * half + ["abnormal"] * (len(q) - half + 1)
    table = pd.DataFrame(
        {
            "study_id": [f"v{i}" for i in range(len(scores))],
            "patient_id": [f"v{i}" for i in range(len(scores))],
            "true": truth,
            "p_normal": 1 - np.asarray(scores),
            "p_abnormal": scores,
        }
    )
    paths = []
    for fold, run in enumerate(FOLDS):  # each run validated on alternate studies
        path = results / "runs" / run / "val" / f"per_study_{how}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.iloc[fold::2].to_csv(path, index=False)
        paths.append(path)
    return paths


def _final_test(results: Path, test: Path, members: dict, how: str) -> tuple:
    """The workflow's final test of the ensemble (evaluate.classify.test_model)."""
    checkpoints = [
        m[1].parent / json.loads(m[0].read_text())["selected"]["file"] for m in members.values()
    ]
    val = _validation(results, test, checkpoints, how)
    runs = {run: (*members[run], v) for run, v in zip(FOLDS, val, strict=True)}
    options = {"study_probability": how, "threshold": "youden"}
    return classify.test_model(RUN, runs, test, "ensemble", True, options, "cpu")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The radiographs, their manifest, the final test (mean rule) and the package."""
    root = tmp_path_factory.mktemp("package")
    images_dir = root / "radiographs"
    images_dir.mkdir()
    images = _radiographs(images_dir)
    images[["image", "study_id", "patient_id", "label", "study_type"]].assign(
        image=images["path"]
    ).to_csv(images_dir / "manifest.csv", index=False)
    results = root / "results"
    test = results / "datasets" / "test.h5"
    splits = pd.DataFrame({"subject_id": images["study_id"].unique(), "split": "test"})
    pack_split(images, splits, "test", SIZE, CLASSES, test)
    members = _fold_runs(results)
    per_image, per_study, models = _final_test(results, test, members, "mean")
    write_json(results / "final" / RUN / "models.json", models)
    out = root / "package" / f"{RUN}.zip"
    runs = {run: results / "runs" / run for run in FOLDS}
    package.main(  # as the workflow's rule runs it
        ["--task", "classification", "--run", RUN, "--out", str(out),
         "--models-json", str(results / "final" / RUN / "models.json"), "--runs", *FOLDS,
         "--selections", *[str(runs[r] / "selection.json") for r in FOLDS],
         "--indices", *[str(runs[r] / "checkpoints" / "index.json") for r in FOLDS],
         "--provenance", *[str(runs[r] / "provenance.json") for r in FOLDS]]
    )  # fmt: skip
    return {
        "root": root,
        "images": images,
        "dir": images_dir,
        "results": results,
        "test": test,
        "members": members,
        "per_image": per_image,
        "per_study": per_study,
        "models": models,
        "zip": out,
    }


def _compare(found: pd.DataFrame, expected: pd.DataFrame, key: str) -> None:
    merged = expected.merge(found, on=key, suffixes=("", "_package"), validate="1:1")
    assert len(merged) == len(expected) == len(found)
    for column in ("p_normal", "p_abnormal"):
        assert np.allclose(merged[column], merged[f"{column}_package"], rtol=0, atol=1e-9)
    assert (merged["predicted"] == merged["predicted_package"]).all()
    assert (merged["true"] == merged["true_package"]).all()


def test_segsweep_package_takes_the_task_from_its_option_config_or_results(built):
    by_hand = ["--run", RUN, "--results", str(built["results"]), "--out", "x.zip"]
    assert requested(by_hand)  # the final model's models.json is a classifier's
    assert requested([*by_hand, "--config", str(CONFIGS / "config.yaml")])  # which names no task
    assert requested(["--run", RUN, "--config", str(CONFIGS / "classification.yaml")])
    assert not requested([*by_hand, "--task", "segmentation"])
    assert not requested(["--run", RUN, "--results", str(built["root"]), "--out", "x.zip"])


def test_the_manifest_records_what_the_final_model_is(built):
    manifest = open_archive(built["zip"]).manifest
    models = built["models"]
    assert manifest["task"] == "classification" and manifest["format"] == FORMAT
    assert manifest["configuration"] == RUN and manifest["runs"] == FOLDS == models["runs"]
    assert manifest["config_hash"] == "hash0"
    assert manifest["classes"] == CLASSES and manifest["positive"] == "abnormal"
    assert manifest["preparation"]["size"] == SIZE
    assert manifest["preparation"]["input_size"] == [INPUT_SIZE]
    assert manifest["study"]["probability"] == "mean"
    assert manifest["threshold"]["value"] == models["threshold"]
    assert manifest["threshold"]["rule"] == "youden"
    assert manifest["threshold"]["studies"] == models["threshold_studies"]
    assert manifest["ensemble"]["rule"] == "mean"
    for fold, (network, run) in enumerate(zip(manifest["networks"], FOLDS, strict=True)):
        assert network["run_id"] == run and network["epoch"] == 3 + fold
        assert network["checkpoint"]["file"] == f"epoch-{3 + fold:04d}.pt"
        assert network["weights"] == f"weights/fold-{fold}.safetensors"
        assert network["onnx"]["file"] == f"onnx/fold-{fold}.onnx"
        assert network["input_size"] == INPUT_SIZE and network["size"] == SIZE
    with zipfile.ZipFile(built["zip"]) as archive:
        readme = archive.read("README.md").decode()
    assert f"{models['threshold']:.6g}" in readme and "segsweep predict" in readme


def test_a_manifest_csv_gives_the_final_tests_studies_and_images(built, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        predict.main(
            [
                "--model",
                str(built["zip"]),
                "--input",
                str(built["dir"] / "manifest.csv"),
                "--output",
                str(tmp_path),
                "--device",
                "cpu",
            ]
        )
    assert done.value.code == 0
    assert "10 studies" in capsys.readouterr().out
    per_study = pd.read_csv(tmp_path / "per_study.csv", dtype={"predicted": str})
    expected = built["per_study"]
    assert list(per_study.columns) == list(expected.columns)
    _compare(per_study, expected, "study_id")
    assert set(per_study["predicted"]) == set(CLASSES)  # both classes at the threshold
    assert (per_study["threshold"] == built["models"]["threshold"]).all()
    assert (
        per_study["n_images"].to_numpy()
        == expected.set_index("study_id").loc[per_study["study_id"], "n_images"].to_numpy()
    ).all()
    per_image = pd.read_csv(tmp_path / "per_image.csv")
    assert list(per_image.columns) == list(built["per_image"].columns)
    _compare(per_image, built["per_image"], "image_id")


def test_image_files_are_each_a_study_with_the_final_tests_image_probabilities(built, tmp_path):
    predictor = ClassificationPredictor.load(built["zip"], "cpu")
    files = [built["dir"] / "p0_s0_i0.png", built["dir"]]  # one twice: a folder and a file
    found, problems = find_images(files, CLASSES)
    assert problems == [("p0_s0_i0", "image id p0_s0_i0 given twice")]
    per_image, per_study, problems = predict_images(predictor, [built["dir"]], tmp_path, False)
    assert not problems and len(per_study) == len(per_image) == len(built["images"])
    assert (per_study["study_id"] == per_study["patient_id"]).all()
    assert (per_image["true"] == "").all()
    expected = built["per_image"]
    merged = expected.merge(per_image, on="image_id", suffixes=("", "_package"))
    assert len(merged) == len(expected)
    assert np.allclose(merged["p_abnormal"], merged["p_abnormal_package"], rtol=0, atol=1e-9)
    threshold = built["models"]["threshold"]
    assert (
        per_study["predicted"]
        == np.where(per_study["p_abnormal"] >= threshold, "abnormal", "normal")
    ).all()


def test_the_max_study_rule_agrees_with_the_final_test(built, tmp_path):
    per_image, per_study, models = _final_test(
        built["results"], built["test"], built["members"], "max"
    )
    predictor = ClassificationPredictor.load(built["zip"], "cpu")
    manifest = {**predictor.manifest, "study": {"probability": "max"}}
    manifest["threshold"] = {**manifest["threshold"], "value": models["threshold"]}
    predictor = ClassificationPredictor(manifest, predictor.networks, predictor.device)
    found, found_studies, _ = predict_images(
        predictor, [built["dir"] / "manifest.csv"], tmp_path, False
    )
    _compare(found_studies, per_study, "study_id")
    assert set(found_studies["predicted"]) == set(CLASSES)


def test_the_onnx_networks_match_pytorch_and_the_readme_snippet_runs(built, tmp_path, monkeypatch):
    predictor = ClassificationPredictor.load(built["zip"], "cpu")
    monkeypatch.chdir(tmp_path)
    shutil.copy(built["zip"], tmp_path / "model.zip")
    images = built["images"]
    study = images[images["study_id"] == "p1_s1"]
    prepared = np.stack([predictor.prepare(path) for path in study["image"]])
    x = resize_images(torch.from_numpy(prepared)[:, None], INPUT_SIZE)
    with zipfile.ZipFile("model.zip") as archive:
        archive.extractall("unpacked")
    for fold, network in enumerate(predictor.networks):
        with torch.no_grad():
            expected = network(x).numpy()
        logits = run_onnx(Path("unpacked") / f"onnx/fold-{fold}.onnx", x.numpy())
        assert logits.shape == (len(study), 2)
        assert np.abs(logits - expected).max() < TOLERANCE
    readme = open_archive("model.zip").read("README.md").decode()
    code = re.search(r"```python\n(.*?)```", readme, re.DOTALL)[1]
    scope = {"x": x.numpy()}
    exec(code, scope)
    per_study = built["per_study"].set_index("study_id")
    assert abs(scope["study"] - per_study.loc["p1_s1", "p_abnormal"]) < TOLERANCE
    assert scope["abnormal"] == (per_study.loc["p1_s1", "predicted"] == "abnormal")


def test_a_study_with_an_unreadable_image_is_left_out(built, tmp_path, capsys):
    folder = tmp_path / "in"
    shutil.copytree(built["dir"], folder)
    (folder / "p2_s0_i1.png").write_bytes(b"not a png")
    table = pd.read_csv(folder / "manifest.csv")
    table.loc[len(table)] = ["", "p9_s0", "p9", "normal", ""]  # no image: its line left out
    table.to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(SystemExit) as done:
        predict.main(
            [
                "--model",
                str(built["zip"]),
                "--input",
                str(folder / "manifest.csv"),
                "--output",
                str(tmp_path / "out"),
                "--device",
                "cpu",
            ]
        )
    assert done.value.code == 1
    err = capsys.readouterr().err
    assert "p2_s0" in err and "unreadable image" in err and "empty image" in err
    per_study = pd.read_csv(tmp_path / "out" / "per_study.csv")
    assert "p2_s0" not in set(per_study["study_id"]) and len(per_study) == 9
    expected = built["per_study"][built["per_study"]["study_id"] != "p2_s0"]
    _compare(per_study, expected, "study_id")


def _rewritten(source: Path, target: Path, change) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = change(item.filename, old.read(item.filename))
            if data is not None:  # stored: deflating the weights again is slow
                new.writestr(item.filename, data, zipfile.ZIP_STORED)
    return target


@pytest.mark.parametrize("broken", ["newer", "truncated", "missing"])
def test_a_broken_classification_package_is_one_error_line(built, tmp_path, capsys, broken):
    path = tmp_path / "model.zip"
    if broken == "truncated":
        data = built["zip"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
        message = "truncated"
    elif broken == "newer":

        def newer(name, data):
            if name != "manifest.json":
                return data
            return json.dumps({**json.loads(data), "format": FORMAT + 1}).encode()

        _rewritten(built["zip"], path, newer)
        message = "newer than this segsweep reads"
    else:
        _rewritten(built["zip"], path, lambda n, d: None if n == "onnx/fold-1.onnx" else d)
        message = "lacks onnx/fold-1.onnx"
    with pytest.raises(SystemExit) as done:
        predict.main(
            ["--model", str(path), "--input", str(built["dir"]), "--output", str(tmp_path / "out")]
        )
    assert isinstance(done.value.code, str) and done.value.code.startswith("error: ")
    assert message in done.value.code and "\n" not in done.value.code
    assert not (tmp_path / "out").exists()
