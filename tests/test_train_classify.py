"""Training a classifier on tiny packed image sets (32 px): the run's outputs and log columns
through the training job, determinism for a seed, resume after an interruption mid-epoch,
transfer from a checkpoint of other classes with frozen blocks, class weights, and a fold's
studies drawn from both image-set files; on a CUDA GPU only, mixed precision."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score

from segsweep.errors import ConfigError
from segsweep.evaluate.probabilities import predict_probabilities
from segsweep.io.image_sets import read_image_set, write_image_set
from segsweep.model.checkpoints import load_checkpoint
from segsweep.model.classifiers import build_classifier
from segsweep.tasks import stages
from segsweep.train import classify
from segsweep.train.classify import LOG_COLUMNS, class_weights, image_auc, train_classifier
from segsweep.train.loop import subset_patients

torch.set_num_threads(1)

HP = {
    "model": "resnet18",
    "batch_size": 8,
    "epochs": 2,
    "checkpoint_every": 1,
    "lr": 0.001,
    "lr_policy": "constant",
    "dropout": 0.2,
    "augment": True,
    "seed": 0,
}
STEADY = [c for c in LOG_COLUMNS if c != "time_s"]


def write_set(path, patients, classes=("normal", "abnormal"), seed=0):
    """Two studies of two 32-px images per patient; a study's class cycles through `classes`
    (abnormal: a bright square); z-scored per image as packing does."""
    rng = np.random.default_rng(seed)
    images, label, text = [], [], {c: [] for c in ("image_id", "study_id", "patient_id")}
    for p, patient in enumerate(patients):
        for s in range(2):
            k = (p + s) % len(classes)
            for i in range(2):
                image = rng.normal(size=(32, 32)).astype(np.float32)
                image[8 : 8 + 4 * k, 8 : 8 + 4 * k] += 3.0
                images.append((image - image.mean()) / image.std())
                label.append(k)
                text["image_id"].append(f"{patient}_s{s}_i{i}")
                text["study_id"].append(f"{patient}_s{s}")
                text["patient_id"].append(patient)
    n = len(label)
    text |= {"study_type": ["XR_WRIST"] * n, "path": [f"{i}.png" for i in text["image_id"]]}
    write_image_set(path, np.stack(images), np.array(label), text, list(classes))
    return path


@pytest.fixture()
def sets(tmp_path):
    train_patients = [f"p{i:02d}" for i in range(10)]  # 40 images, 5 steps of 8
    return (
        write_set(tmp_path / "train.h5", train_patients, seed=1),
        write_set(tmp_path / "val.h5", ["v1", "v2", "v3"], seed=2),
    )


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def _same_weights(one, two):
    return one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)


def test_a_classification_job_writes_every_output(sets, tmp_path):
    out = tmp_path / "runs" / "cls"
    hp = json.dumps({**HP, "run_id": "cls", "input_size": 40, "weight_decay": 1e-4})
    argv = ["--hp-json", hp, "--train", str(sets[0]), "--val", str(sets[1])]
    stages.train([*argv, "--out", str(out), "--threads", "1", "--device", "cpu"])
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert params["run_id"] == "cls" and params["class_weights"] == "balanced"
    log = pd.read_csv(out / "train_log.csv")
    assert tuple(log.columns) == LOG_COLUMNS and log["step"].tolist() == [5, 10]
    assert log["val_auc"].between(0, 1).all() and log["val_accuracy"].between(0, 1).all()
    index = json.loads((out / "checkpoints/index.json").read_text())
    assert index["classes"] == ["normal", "abnormal"]
    assert index["label_mode"] == "classification"
    assert [c["file"] for c in index["checkpoints"]] == ["epoch-0001.pt", "epoch-0002.pt"]
    subjects = json.loads((out / "subjects.json").read_text())
    assert len(subjects["train"]) == 20 and subjects["val"] == sorted(
        f"v{p}_s{s}" for p in (1, 2, 3) for s in (0, 1)
    )
    assert json.loads((out / "provenance.json").read_text())["status"] == "ok"
    assert not (out / "state").exists()
    model, meta = load_checkpoint(out / "checkpoints/epoch-0002.pt", "cpu", build_classifier)
    assert (meta["task"], meta["size"], meta["input_size"]) == ("classification", 32, 40)
    assert (meta["in_channels"], meta["out_channels"], meta["step"]) == (1, 2, 10)
    assert model(torch.zeros(3, 1, 40, 40)).shape == (3, 2)


def test_training_is_deterministic_for_a_seed(sets, tmp_path):
    for name in ("one", "two"):
        train_classifier(HP, *sets, tmp_path / name, device="cpu")
    train_classifier({**HP, "seed": 1, "epochs": 1}, *sets, tmp_path / "other", device="cpu")
    logs = {n: pd.read_csv(tmp_path / n / "train_log.csv") for n in ("one", "two", "other")}
    pd.testing.assert_frame_equal(logs["one"][STEADY], logs["two"][STEADY])
    assert logs["one"]["train_loss"][0] != logs["other"]["train_loss"][0]
    for name in ("epoch-0001.pt", "epoch-0002.pt"):
        one, two = (_weights(tmp_path / n / "checkpoints" / name) for n in ("one", "two"))
        assert _same_weights(one, two)


def test_a_run_interrupted_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(
    sets, tmp_path, monkeypatch, capsys
):
    # states after steps 3, 5 (epoch 1), 6, 9, 10 (epoch 2), …: stop after the one of step 6
    hp = {**HP, "epochs": 3, "checkpoint_unit": "steps", "checkpoint_every": 3}
    hp |= {"lr_policy": "cosine", "lr_t0": 1, "patience": 5, "early_stopping_metric": "val_auc"}
    train_classifier(hp, *sets, tmp_path / "reference", device="cpu")
    saved, original = [], classify.ClassifierTrainer.save_state

    def save_then_die(self):
        original(self)
        saved.append(self.progress.step)
        if len(saved) == 3:
            raise RuntimeError("killed")

    monkeypatch.setattr(classify.ClassifierTrainer, "save_state", save_then_die)
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        train_classifier(hp, *sets, killed, device="cpu")
    assert saved == [3, 5, 6] and not (killed / "checkpoints/index.json").exists()
    monkeypatch.undo()
    capsys.readouterr()
    train_classifier(hp, *sets, killed, device="cpu")
    assert "resuming at epoch 2, step 6" in capsys.readouterr().out
    reference = json.loads((tmp_path / "reference/checkpoints/index.json").read_text())
    assert json.loads((killed / "checkpoints/index.json").read_text()) == reference
    for entry in reference["checkpoints"]:
        assert _same_weights(
            _weights(tmp_path / "reference/checkpoints" / entry["file"]),
            _weights(killed / "checkpoints" / entry["file"]),
        )
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "reference/train_log.csv")[STEADY],
        pd.read_csv(killed / "train_log.csv")[STEADY],
    )


def test_transfer_loads_matching_tensors_and_freezes_the_first_blocks(sets, tmp_path, capsys):
    train_classifier({**HP, "epochs": 1}, *sets, tmp_path / "source", device="cpu")
    source = tmp_path / "source/checkpoints/epoch-0001.pt"
    three = ("a", "b", "c")
    target_sets = (
        write_set(tmp_path / "t_train.h5", [f"q{i}" for i in range(6)], three, seed=3),
        write_set(tmp_path / "t_val.h5", ["w1", "w2"], three, seed=4),
    )
    hp = {**HP, "epochs": 1, "init_from": "source", "freeze_blocks": 2}
    capsys.readouterr()
    train_classifier(hp, *target_sets, tmp_path / "target", device="cpu", init_checkpoint=source)
    before, after = _weights(source), _weights(tmp_path / "target/checkpoints/epoch-0001.pt")
    assert f"initialised {len(before) - 2}/{len(after)} tensors" in capsys.readouterr().out
    frozen = [k for k in before if k.split(".")[0] in ("conv1", "bn1", "layer1")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # BN stats too
    trained = [k for k in before if k.startswith("layer2.") and k.endswith("weight")]
    assert all(not torch.equal(before[k], after[k]) for k in trained)
    assert after["fc.1.weight"].shape == (3, 512)
    with pytest.raises(ConfigError, match="train.freeze_blocks"):
        hp6 = {**hp, "freeze_blocks": 6}
        train_classifier(hp6, *sets, tmp_path / "six", device="cpu", init_checkpoint=source)


def test_balanced_class_weights_and_auc():
    np.testing.assert_allclose(class_weights(np.array([0, 0, 0, 1]), 2), [4 / 6, 2.0])
    np.testing.assert_allclose(class_weights(np.array([0, 2, 2]), 3), [1.0, 1.0, 0.5])
    p1 = np.array([0.1, 0.4, 0.4, 0.8])
    probabilities = np.stack([1 - p1, p1], axis=1)
    assert image_auc(probabilities, np.array([0, 0, 1, 1])) == 0.875  # a tie counts half
    assert np.isnan(image_auc(probabilities, np.array([1, 1, 1, 1])))
    three = np.eye(3)[[0, 1, 2, 2]]
    assert image_auc(three, np.array([0, 1, 2, 2])) == 1.0
    rng = np.random.default_rng(0)
    label = rng.integers(0, 3, 60)
    scores = rng.dirichlet(np.ones(3), 60).round(1)  # rounded: ties
    scores /= scores.sum(axis=1, keepdims=True)
    expected = roc_auc_score(label, scores, multi_class="ovr", average="macro")
    assert image_auc(scores, label) == pytest.approx(expected, abs=1e-12)


def test_a_fold_draws_its_studies_from_both_files_and_weights_its_classes(sets, tmp_path, capsys):
    # normal studies p00_s0, p01_s1, p02_s0, v1_s0 and one abnormal, p00_s1: 8 and 2 images
    studies = ["p00_s0", "p01_s1", "p02_s0", "v1_s0", "p00_s1"]
    subjects = {"train": studies, "val": ["p09_s0", "v2_s1"]}
    hp = {**HP, "epochs": 1, "augment": False}
    train_classifier(hp, *sets, tmp_path / "fold", device="cpu", subjects=subjects)
    used = json.loads((tmp_path / "fold/subjects.json").read_text())
    assert used == {"train": sorted(studies), "val": ["p09_s0", "v2_s1"]}
    assert "class weights {'normal': 0.625, 'abnormal': 2.5}" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "fold/train_log.csv")["step"].tolist() == [2]


def test_a_training_fraction_keeps_nested_patients_and_a_lone_image_joins_a_batch(sets, tmp_path):
    hp = {**HP, "epochs": 1, "batch_size": 3, "train_fraction": 0.7, "class_weights": "none"}
    train_classifier(hp, *sets, tmp_path / "part", device="cpu")
    used = json.loads((tmp_path / "part/subjects.json").read_text())
    kept = subset_patients(np.array([f"p{i:02d}" for i in range(10)]), 0.7)
    assert {study.split("_")[0] for study in used["train"]} == kept and len(kept) == 7
    # 28 images in batches of 3: eight of 3 and a last one of 4, not a ninth of 3 and one of 1
    assert pd.read_csv(tmp_path / "part/train_log.csv")["step"].tolist() == [9]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_on_cuda_a_run_trains_with_mixed_precision_and_predicts_as_on_the_cpu(sets, tmp_path):
    hp = {**HP, "input_size": 48, "dropout": 0.0}
    train_classifier(hp, *sets, tmp_path / "gpu", device="cuda")
    log = pd.read_csv(tmp_path / "gpu/train_log.csv")
    assert np.isfinite(log[["train_loss", "val_loss"]].to_numpy()).all()
    images = read_image_set(sets[1]).images
    checkpoint = tmp_path / "gpu/checkpoints/epoch-0002.pt"
    probabilities = {}
    for device in ("cuda", "cpu"):
        model, meta = load_checkpoint(checkpoint, device, build_classifier)
        probabilities[device] = predict_probabilities(model, images, meta, device)
    # fp16 logits on the GPU against fp32 on the CPU
    np.testing.assert_allclose(probabilities["cuda"], probabilities["cpu"], atol=0.02)
