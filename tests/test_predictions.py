"""Per-image and per-study prediction tables: study aggregation (mean, max), the threshold,
the score of one metric against scikit-learn and the pooled scorer of configurations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from segsweep.errors import ConfigError
from segsweep.evaluate.predictions import (
    METRICS,
    apply_threshold,
    classes_of,
    image_columns,
    image_table,
    pooled_scorer,
    prediction_tables,
    read_predictions,
    score,
    study_columns,
    study_table,
)

CLASSES = ["normal", "abnormal"]
IDS = {
    "image_id": ["i1", "i2", "i3", "i4", "i5"],
    "study_id": ["s1", "s1", "s2", "s3", "s3"],
    "patient_id": ["p1", "p1", "p1", "p2", "p2"],
    "study_type": ["XR_HAND", "XR_HAND", "XR_WRIST", "XR_HAND", "XR_HAND"],
    "path": [f"img/{i}.png" for i in range(5)],
}
TRUE = np.array([1, 1, 0, 0, 0])
POSITIVE = np.array([0.9, 0.3, 0.2, 0.7, 0.1])
PROBABILITIES = np.stack([1 - POSITIVE, POSITIVE], axis=1)


def test_the_image_table_names_classes_and_probabilities() -> None:
    table = image_table(IDS, TRUE, PROBABILITIES, CLASSES)
    assert list(table.columns) == image_columns(CLASSES)
    assert list(table["true"]) == ["abnormal", "abnormal", "normal", "normal", "normal"]
    np.testing.assert_allclose(table["p_abnormal"], POSITIVE)
    assert (table["predicted"] == "").all()
    with pytest.raises(ValueError, match="probabilities must be"):
        image_table(IDS, TRUE, PROBABILITIES[:, :1], CLASSES)


@pytest.mark.parametrize(("how", "expected"), [("mean", [0.6, 0.2, 0.4]), ("max", [0.9, 0.2, 0.7])])
def test_a_study_is_the_mean_or_max_of_its_images(how: str, expected: list[float]) -> None:
    studies = study_table(image_table(IDS, TRUE, PROBABILITIES, CLASSES), CLASSES, how)
    assert list(studies.columns) == study_columns(CLASSES)
    assert list(studies["study_id"]) == ["s1", "s2", "s3"]
    assert list(studies["n_images"]) == [2, 1, 2]
    assert list(studies["true"]) == ["abnormal", "normal", "normal"]
    np.testing.assert_allclose(studies["p_abnormal"], expected)
    np.testing.assert_allclose(studies["p_normal"], 1 - np.array(expected))
    assert studies["threshold"].isna().all()


def test_three_classes_aggregate_per_class_and_max_renormalises() -> None:
    classes = ["a", "b", "c"]
    probabilities = np.array(
        [[0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [0.2, 0.2, 0.6], [1, 0, 0], [0.6, 0.4, 0]]
    )
    per_image = image_table(IDS, np.array([2, 2, 1, 0, 0]), probabilities, classes)
    mean = study_table(per_image, classes, "mean")
    np.testing.assert_allclose(mean.loc[0, ["p_a", "p_b", "p_c"]], [0.3, 0.2, 0.5])
    most = study_table(per_image, classes, "max")
    np.testing.assert_allclose(most.loc[0, ["p_a", "p_b", "p_c"]], np.array([0.5, 0.3, 0.8]) / 1.6)
    np.testing.assert_allclose(most.loc[2, ["p_a", "p_b", "p_c"]], [1 / 1.4, 0.4 / 1.4, 0])
    images, studies = apply_threshold(per_image, most, classes, 0.5)
    assert list(studies["predicted"]) == ["c", "c", "a"] and studies["threshold"].isna().all()
    assert list(images["predicted"]) == ["a", "c", "c", "a", "a"]


def test_a_study_with_mixed_labels_is_an_error_naming_it() -> None:
    per_image = image_table(IDS, np.array([1, 0, 0, 0, 0]), PROBABILITIES, CLASSES)
    with pytest.raises(ValueError, match="study s1"):
        study_table(per_image, CLASSES)
    with pytest.raises(ConfigError, match="study_probability"):
        study_table(per_image, CLASSES, "median")


def test_the_threshold_applies_to_studies_and_their_images_alike() -> None:
    per_image = image_table(IDS, TRUE, PROBABILITIES, CLASSES)
    images, studies = apply_threshold(per_image, study_table(per_image, CLASSES), CLASSES, 0.35)
    assert list(studies["predicted"]) == ["abnormal", "normal", "abnormal"]
    assert (studies["threshold"] == 0.35).all() and "threshold" not in images
    assert list(images["predicted"]) == ["abnormal", "normal", "normal", "abnormal", "normal"]
    assert (per_image["predicted"] == "").all()  # copies


def test_prediction_tables_choose_youden_on_validation_or_on_themselves() -> None:
    images, studies = prediction_tables(IDS, TRUE, PROBABILITIES, CLASSES, "mean", "youden")
    assert studies["threshold"].iloc[0] == 0.6  # the one positive study, highest
    validation = studies.assign(p_abnormal=[0.3, 0.1, 0.2], true=["abnormal", "normal", "normal"])
    _, tested = prediction_tables(IDS, TRUE, PROBABILITIES, CLASSES, "mean", "youden", validation)
    assert (tested["threshold"] == 0.3).all()
    assert list(tested["predicted"]) == ["abnormal", "normal", "abnormal"]
    _, fixed = prediction_tables(IDS, TRUE, PROBABILITIES, CLASSES, "max", 0.8)
    assert list(fixed["predicted"]) == ["abnormal", "normal", "normal"]


def test_the_score_of_a_table_equals_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    n = 80
    true = (rng.random(n) < 0.4).astype(int)
    positive = np.round(np.clip(0.3 * true + 0.7 * rng.random(n), 0, 1), 1)
    ids = {c: [f"{c}{i}" for i in range(n)] for c in IDS}
    _, studies = prediction_tables(ids, true, np.stack([1 - positive, positive], 1), CLASSES)
    predicted = studies["predicted"] == "abnormal"
    expected = {
        "auc": sk.roc_auc_score(true, positive),
        "accuracy": sk.accuracy_score(true, predicted),
        "sensitivity": sk.recall_score(true, predicted),
        "specificity": sk.recall_score(true, predicted, pos_label=0),
        "precision": sk.precision_score(true, predicted),
        "f1": sk.f1_score(true, predicted),
        "kappa": sk.cohen_kappa_score(true, predicted),
    }
    assert set(expected) == set(METRICS)
    for metric, value in expected.items():
        assert score(studies, CLASSES, metric) == pytest.approx(value, abs=1e-9)
    with pytest.raises(ConfigError, match="selection.metric"):
        score(studies, CLASSES, "dice")


def test_written_tables_read_back_with_text_classes(tmp_path: Path) -> None:
    classes = ["0", "1"]  # class names that look like numbers stay names
    images, studies = prediction_tables(IDS, TRUE, PROBABILITIES, classes, threshold=0.5)
    studies.to_csv(tmp_path / "per_study.csv", index=False)
    read = read_predictions(tmp_path / "per_study.csv")
    assert classes_of(read) == classes and list(read["true"]) == ["1", "0", "0"]
    assert score(read, classes, "accuracy") == score(studies, classes, "accuracy")


def test_the_pooled_scorer_scores_every_fold_s_studies_together(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths, frames = [], []
    for fold in range(3):
        n = 12
        true = (np.arange(n) % 3 == 0).astype(int)
        positive = np.clip(0.4 * true + 0.6 * rng.random(n), 0, 1)
        ids = {c: [f"{c}{fold}-{i}" for i in range(n)] for c in IDS}
        ids["patient_id"] = [f"p{fold}-{i // 2}" for i in range(n)]
        _, studies = prediction_tables(ids, true, np.stack([1 - positive, positive], 1), CLASSES)
        paths.append(tmp_path / f"fold{fold}.csv")
        studies.to_csv(paths[-1], index=False)
        frames.append(studies)
    pooled = pd.concat(frames)
    value, low, high, patients = pooled_scorer(CLASSES, "auc", 200, 0)(paths)
    assert value == pytest.approx(
        sk.roc_auc_score(pooled["true"] == "abnormal", pooled["p_abnormal"]), abs=1e-9
    )
    assert low < value < high and patients == 18
