"""The tiny configurations of the session's shared runs (tests/conftest.py).

Segmentation: nine subjects, four runs (loss × labels), two epochs each. Classification: a
synthetic radiograph cohort of 16 patients (wrist and elbow studies), a 2 × 2 sweep of ResNet-18s
on two folds."""

TINY_CONFIG = {
    "data": {
        "synthetic": {
            "seed": 7,
            "scale": 0.08,
            "sources": {
                "epi": {"n": 4, "labelled": 0.75},
                "jopp": {"n": 4, "labelled": 0.75},
                "maas": {"n": 1, "labelled": 0.0},
            },
        }
    },
    "preprocess": {
        "n4": {"iterations": [20, 10]},
        "crop": {"size": 32, "slices": 8},
    },
    "train": {"depth": 2, "base_channels": 4, "epochs": 2, "checkpoint_every": 1, "batch_size": 8},
    "threads": 1,
}
TINY_SWEEP = {
    "grids": {
        "loss_vs_labels": {"loss": ["cross_entropy", "dice"], "labels": ["merged", "separate"]}
    }
}
TINY_CLASSIFICATION = {
    "task": "classification",
    "sweep": "config/sweep.yaml",
    "data": {
        "labels": {"normal": 0, "abnormal": 1},
        "radiographs": {
            "seed": 3,
            "patients": 16,
            "size": 32,
            "views": [1, 2],
            "study_types": ["XR_WRIST", "XR_ELBOW"],
        },
    },
    "preprocess": {"image_size": 32},
    "split": {
        "fractions": {"train": 0.45, "val": 0.2, "test": 0.35},
        "stratify": "label",
        "folds": 2,
    },  # fmt: skip
    "train": {
        "model": "resnet18",
        "epochs": 2,
        "batch_size": 8,
        "checkpoint_every": 1,
        "early_stopping_metric": "val_auc",
        "augment": True,
    },
    "selection": {"metric": "auc", "level": "study"},
    "classification": {"bootstrap": 200, "gallery": 2},
    "report": {"title": "Tiny classification", "pairs": [["input_size", "dropout"]]},
    "threads": 1,
}
TINY_CLASSIFICATION_SWEEP = {"grids": {"g": {"input_size": [24, 32], "dropout": [0.0, 0.5]}}}
