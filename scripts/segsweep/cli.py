"""Command-line options several stages share: where a run's checkpoints are, the NSD's
tolerance, and the configuration, sweep and results folder of the cohort-level stages run by
hand."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from segsweep import layout
from segsweep.config_schema import defaults


def add_run_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """--index (a run's checkpoints/index.json) or --run-dir (its run folder)."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--index", type=Path, help="the run's checkpoints/index.json")
    where.add_argument("--run-dir", type=Path, help="a run folder laid out as results/runs/{run}")


def checkpoint_index(args: argparse.Namespace) -> Path:
    """The run's checkpoint index, as given or in its run folder."""
    return args.index or layout.under(args.run_dir, layout.RUN_INDEX, base=layout.RUN_DIR)


def add_split_options(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    """`flag` (one HDF5 split file, or with --subjects-json the split files that hold a run's
    subjects: a fold's validation patients lie in train.h5 and val.h5) and --subjects-json."""
    parser.add_argument(
        flag,
        required=True,
        nargs="+",
        type=Path,
        help=f"{what} (with --subjects-json: the split files that hold the run's subjects)",
    )
    parser.add_argument(
        "--subjects-json", type=Path, help="the run's subjects.json: only its subjects of the split"
    )


def split_subjects(args: argparse.Namespace, split: str) -> list[str] | None:
    """The run's subjects of `split` from --subjects-json (None without it: the whole file)."""
    if args.subjects_json is None:
        return None
    return json.loads(args.subjects_json.read_text())[split]


def _positive_mm(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 mm, not {text}")
    return value


def add_nsd_tolerance_option(parser: argparse.ArgumentParser) -> None:
    """--nsd-tolerance-mm: the NSD's τ in mm (config `metrics.nsd_tolerance_mm`, whose schema
    default it takes)."""
    default = defaults("metrics")["nsd_tolerance_mm"]
    parser.add_argument(
        "--nsd-tolerance-mm",
        type=_positive_mm,
        default=default,
        help=f"tolerance of the normalised surface Dice in mm (default {default})",
    )


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """--config-json, --sweep-json and --results, the inputs of the stages after training."""
    parser.add_argument("--config-json", required=True, help="the whole validated config")
    parser.add_argument("--sweep-json", required=True, help="the sweep specification")
    parser.add_argument("--results", type=Path, default=Path(layout.RESULTS))


def sweep_options(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """(config, sweep, results folder) of `add_sweep_options`."""
    return json.loads(args.config_json), json.loads(args.sweep_json), args.results
