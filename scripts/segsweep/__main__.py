"""Command line: `python -m segsweep <stage> [args]` runs one stage of the workflow on its own."""

from __future__ import annotations

import importlib
import sys

STAGES = {
    "cohort": "generate the synthetic knee MRI cohort",
    "ingest": "read, validate and reorient one subject",
    "n4": "N4 bias field correction of one image",
    "crop": "crop one subject around the joint centre",
    "split": "patient-level train/val/test split",
    "pack": "normalise and pack one split into HDF5",
    "train": "train one run of the sweep",
    "select": "score every checkpoint of a run on validation",
    "evaluate": "per-slice and per-patient metrics of a checkpoint",
    "final": "choose the final models on validation",
    "export": "predictions in each subject's original geometry",
    "analysis": "runs table and hyperparameter tables",
    "figures": "jitter plots and boxplots",
    "report": "thesis HTML and PDF",
    "sweep": "list the runs of a sweep file",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch to `segsweep.<stage>.main`, importing only that stage's module."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help"} or args[0] not in STAGES:
        width = max(map(len, STAGES))
        lines = [f"  {name:<{width}}  {what}" for name, what in STAGES.items()]
        print("usage: python -m segsweep <stage> [args]\n\nstages:\n" + "\n".join(lines))
        sys.exit(0 if args and args[0] in {"-h", "--help"} else 2)
    module = importlib.import_module(f"segsweep.{args[0]}")
    module.main(args[1:])


if __name__ == "__main__":
    main()
