"""The tiny synthetic cohort and sweep that the workflow tests (local and SLURM) run: nine
subjects, four runs (loss × labels), two epochs each."""

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
