"""The training job of one run, as the workflow starts it: lease a device, train (resuming when
a state is left), and record provenance; the last of its attempts records a failure as the run's
outputs (`segsweep.train.failure`) instead of failing, so the sweep goes on. The job trains
through the `Training` its caller hands (a U-Net's, `segsweep.train.loop`, or a classifier's on
packed image sets, `segsweep.train.classify`); the rest of the job is the same for both.

On CUDA the job also records what the training cost on the device, in provenance.json (the one
record every attempt that ends writes, failed or not): `device_s`, the seconds of this attempt's
training (reading the splits to the checkpoint index, or to the error), and `device_peak_mb`, the
peak memory torch allocated on the device meanwhile (its peak statistics reset at the start; MB of
2^20 bytes, as Snakemake's benchmarks count `max_rss`). On the CPU both are null: Snakemake's
benchmark of the job measures that cost.

provenance.json also records where the run's weights started (`starting_weights`, in the order
they are loaded): torchvision's ImageNet weights of `pretrained: imagenet` (the enum member, the
file and its URL), then the checkpoint of `init_from`; an empty list is random initialisation
from the run's seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from segsweep import layout
from segsweep.devices import choose_device, lease_device
from segsweep.errors import InputError
from segsweep.io.records import read_json, write_json
from segsweep.model import pretrained
from segsweep.model.checkpoints import selected_checkpoint
from segsweep.preprocess.split import run_subjects
from segsweep.provenance import provenance, utc_now
from segsweep.train.failure import write_failure
from segsweep.train.loop import RunFiles
from segsweep.train.rungs import Rung, record_failure


@dataclass(frozen=True)
class Training:
    """What trains one run: its training function, called as
    `train(hp, train.h5, val.h5, files, device, threads, init, subjects)`, and what a failed
    run's outputs record (`write_failure`): the training log's header and the label mode of its
    checkpoint index."""

    train: Callable[..., Any]  # also takes `rung=` (segsweep.train.rungs.Rung)
    log_columns: tuple[str, ...]
    label_mode: Any


def init_checkpoint(args: argparse.Namespace, hp: dict) -> Path | None:
    """The checkpoint a transfer run starts from: the selected checkpoint of the source run
    (`--init-selection` and its `--init-index`), a checkpoint file, or none."""
    if args.init_selection is not None:
        if read_json(args.init_selection).get("status") == "failed":
            raise InputError(None, str(args.init_selection), "the source run failed")
        run_dir = Path(args.init_selection).parent
        index = args.init_index or layout.under(run_dir, layout.RUN_INDEX, base=layout.RUN_DIR)
        return selected_checkpoint(args.init_selection, index)
    if args.init_checkpoint is not None:
        return args.init_checkpoint
    if hp.get("init_from") and Path(str(hp["init_from"])).is_file():
        return Path(hp["init_from"])
    return None


def starting_weights(hp: dict[str, Any], init: Path | None) -> list[dict[str, str]]:
    """Where a run's weights start, in the order they are loaded (see the module docstring)."""
    starts = []
    if hp.get("pretrained", "none") != "none":
        source = pretrained.imagenet_weights(hp["model"])
        starts.append(
            {"from": "imagenet", "weights": source.weights, "file": source.file, "url": source.url}
        )
    if init is not None:
        starts.append({"from": "init_from", "init_from": hp["init_from"], "checkpoint": str(init)})
    return starts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segsweep train", description=__doc__.split("\n")[0])
    parser.add_argument("--hp-json", required=True, help="hyperparameters of the run (JSON)")
    parser.add_argument("--train", required=True, type=Path, help="train.h5")
    parser.add_argument("--val", required=True, type=Path, help="val.h5")
    parser.add_argument(
        "--out",
        type=Path,
        help="run folder: its files laid out as results/runs/{run} (else give each of them)",
    )
    for name, what in (
        ("params", "params.yaml"),
        ("log", "train_log.csv"),
        ("index", "checkpoints/index.json (the checkpoints are written beside it)"),
        ("provenance", "provenance.json"),
        ("state", "folder of the resume state (not a workflow output)"),
        ("subjects", "subjects.json: the subjects that trained and validated the run"),
    ):
        parser.add_argument(f"--{name}", type=Path, help=what)
    parser.add_argument(
        "--splits",
        type=Path,
        help="splits.csv: the run trains and validates on its subjects (its fold's, with the hp"
        " `fold`) from both split files; without it, on all of train.h5 and val.h5",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--device", default="auto", help="auto (lease a free GPU, else CPU) | cpu | cuda | cuda:N"
    )
    parser.add_argument(
        "--init-selection",
        type=Path,
        default=None,
        help="selection.json of the run to initialise from (hp init_from = its run id)",
    )
    parser.add_argument(
        "--init-index",
        type=Path,
        help="checkpoints/index.json of that run (default: in the selection's run folder)",
    )
    parser.add_argument(
        "--init-checkpoint", type=Path, default=None, help="checkpoint to initialise from"
    )
    parser.add_argument(
        "--config-hash",
        default=os.environ.get("SEGSWEEP_CONFIG_HASH"),
        help="of config and sweep, for provenance (default: $SEGSWEEP_CONFIG_HASH, which the"
        " workflow sets)",
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        help="successive halving: train to this rung's epochs only (see segsweep.train.rungs)",
    )
    parser.add_argument(
        "--from-state", type=Path, help="the state the rung below left, to start from"
    )
    parser.add_argument(
        "--rung-state",
        type=Path,
        help="leave the state at --stop-at here (a rung below the last); without it the job"
        " ends the run at --stop-at",
    )
    parser.add_argument("--attempt", type=int, default=1, help="this attempt (from 1)")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=1,
        help="a failure of the last attempt is recorded as the run's outputs instead of raised",
    )
    return parser


def run_files(args: argparse.Namespace, parser: argparse.ArgumentParser) -> RunFiles:
    """The run's files: each as given, the others in the --out folder; its TensorBoard events
    in the run folder of its index (the folder above checkpoints/, a rung's index's too)."""
    names = ("params", "log", "index", "provenance", "state", "subjects")
    given = {name: getattr(args, name) for name in names}
    if args.out is None and None in given.values():
        parser.error("give --out, or each of --" + " --".join(names))
    folder = RunFiles.in_folder(args.out) if args.out is not None else None
    files = {n: given[n] or getattr(folder, n) for n in names}
    run_folder = files["index"].parent.parent
    events = layout.under(run_folder, layout.RUN_EVENTS, base=layout.RUN_DIR)
    return RunFiles(**files, events=events)


def device_cost(device: torch.device, seconds: float) -> dict[str, float | None]:
    """`device_s` and `device_peak_mb` of a training that took `seconds` on `device` (see the
    module docstring); both None off CUDA."""
    if device.type != "cuda":
        return {"device_s": None, "device_peak_mb": None}
    peak = torch.cuda.max_memory_allocated(device) / 2**20
    return {"device_s": round(seconds, 3), "device_peak_mb": round(peak, 1)}


def main(argv: list[str] | None, training: Training) -> None:
    """Train the run of --hp-json through `training` (see the module docstring)."""
    parser = _parser()
    args = parser.parse_args(argv)
    files = run_files(args, parser)
    hp = json.loads(args.hp_json)
    hp = {**hp, "run_id": hp.get("run_id", files.index.parent.parent.name)}
    lease = lease_device() if args.device == "auto" else None
    device = lease.device if lease is not None else choose_device(args.device)
    if lease is not None and lease.index is not None:
        print(f"leased device {lease.index} ({device})", file=sys.stderr, flush=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started, status, subjects, starts = utc_now(), "ok", None, []
    clock = time.perf_counter()
    try:
        if args.splits is not None:
            splits = pd.read_csv(args.splits, dtype={"subject_id": str})
            subjects = run_subjects(splits, hp.get("fold"))
        init = init_checkpoint(args, hp)
        starts = starting_weights(hp, init)
        rung = Rung(args.stop_at, args.from_state, args.rung_state)
        training.train(
            hp, args.train, args.val, files, device, args.threads, init, subjects, rung=rung
        )
    except Exception as error:
        if args.attempt < args.max_attempts:
            raise  # Snakemake retries the job
        traceback.print_exc()
        status = "failed"
        log, mode = training.log_columns, training.label_mode
        write_failure(files, hp, error, args.attempt, subjects, log, mode)
        if args.rung_state is not None:
            record_failure(args.rung_state, error)
    finally:
        ended, seconds = utc_now(), time.perf_counter() - clock
        if lease is not None:
            lease.release()
    record = provenance(
        hp,
        config_hash=args.config_hash,
        device=str(device),
        device_index=None if lease is None else lease.index,
        started=started,
        ended=ended,
        status=status,
        attempt=args.attempt,
        starting_weights=starts,
        **device_cost(device, seconds),
    )
    write_json(files.provenance, record)
