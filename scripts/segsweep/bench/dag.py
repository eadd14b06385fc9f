"""How fast Snakemake plans a large sweep with segsweep, beside a bare Snakefile of the same shape.

The real Snakefile runs in a scratch directory on the default config with a generated sweep of
N runs: N / k configurations with k-fold cross-validation (`--folds`, default 5 as nnU-Net; fold
runs count as runs); the bare Snakefile has the same per-run rules and files (train → params.yaml,
train_log.csv, checkpoints/index.json, provenance.json; select → selection.json and the two
validation tables; a log and a benchmark file each; one aggregate over all runs) but none of
segsweep's code, so the ratio is what segsweep adds to the limit Snakemake itself sets. Both are
timed as `snakemake --dry-run` in one run of this command.

`--designs` counts instead what each evaluation design costs in training jobs: the default
config and sweep dry-run as a plain split, k-fold cross-validation, leave-one-site-out and nested
m × k cross-validation, each line giving the training jobs Snakemake plans beside the count the
README states (configurations × folds, × sites, × m × k).
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]

BARE_SNAKEFILE = """
RUNS = [f"r{i:05d}" for i in range(int(config["runs"]))]


rule all:
    input:
        "summary/runs.csv",


rule data:
    output:
        "datasets/train.h5",
        "datasets/val.h5",
    shell:
        "touch {output}"


rule train:
    input:
        "datasets/train.h5",
        "datasets/val.h5",
    output:
        "runs/{run}/params.yaml",
        "runs/{run}/train_log.csv",
        "runs/{run}/checkpoints/index.json",
        "runs/{run}/provenance.json",
    log:
        "logs/train/{run}.log",
    benchmark:
        "benchmarks/train/{run}.tsv"
    params:
        hp=lambda w: w.run,
    resources:
        gpu=1,
    shell:
        "touch {output} {log}"


rule select:
    input:
        "runs/{run}/checkpoints/index.json",
        "datasets/val.h5",
    output:
        "runs/{run}/selection.json",
        "runs/{run}/val/per_slice.csv",
        "runs/{run}/val/per_patient.csv",
    log:
        "logs/select/{run}.log",
    benchmark:
        "benchmarks/select/{run}.tsv"
    shell:
        "touch {output} {log}"


rule aggregate:
    input:
        expand("runs/{run}/selection.json", run=RUNS),
        expand("runs/{run}/val/per_patient.csv", run=RUNS),
    output:
        "summary/runs.csv",
    shell:
        "touch {output}"
"""


def sweep_of(n_configurations: int) -> dict:
    """A sweep of exactly n_configurations distinct configurations (a multiple of 100): 10 lr ×
    10 batch sizes, repeated with n_configurations / 100 seeds."""
    if n_configurations % 100:
        raise ValueError("the number of configurations must be a multiple of 100")
    return {
        "grids": {
            "scale": {
                "lr": [round(1e-4 * (i + 1), 6) for i in range(10)],
                "batch_size": list(range(2, 12)),
            }
        },
        "repeats": n_configurations // 100,
    }


def dry_run(args: list[str], workdir: Path) -> float:
    """Seconds of one `snakemake --dry-run`; fails loudly if Snakemake does."""
    command = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", "--quiet", "all"]
    start = time.perf_counter()
    result = subprocess.run(command + args, cwd=workdir, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def time_segsweep(n_runs: int, folds: int, scratch: Path) -> float:
    """Dry-run seconds of the real Snakefile on n_runs runs: n_runs / folds configurations of
    `folds` runs each (folds 0: one run each)."""
    if n_runs % max(folds, 1):
        raise ValueError(f"{n_runs} runs are not a whole number of {folds}-fold configurations")
    workdir = scratch / f"segsweep-{n_runs}"
    (workdir / "config").mkdir(parents=True)
    sweep = sweep_of(n_runs // max(folds, 1))
    (workdir / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["split"]["folds"] = folds
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return dry_run(["--snakefile", str(REPO / "Snakefile")], workdir)


def time_bare(n_runs: int, scratch: Path) -> float:
    workdir = scratch / f"bare-{n_runs}"
    workdir.mkdir(parents=True)
    (workdir / "Snakefile").write_text(BARE_SNAKEFILE)
    return dry_run(["--config", f"runs={n_runs}"], workdir)


def planned_training(config: dict, workdir: Path) -> int:
    """The training jobs (rules train and outer<o>_train) a dry run of the real Snakefile plans
    for `config` with the repository's default sweep."""
    workdir.mkdir(parents=True)
    (workdir / "config").mkdir()
    (workdir / "config" / "sweep.yaml").write_text((REPO / "config" / "sweep.yaml").read_text())
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--dry-run", "--cores", "1", "all"]
    command += ["--snakefile", str(REPO / "Snakefile")]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake failed in {workdir}:\n{result.stdout}\n{result.stderr}")
    # rule → its job count in the job stats table (which a dry run may print more than once)
    counts = dict(re.findall(r"^((?:outer\d+_)?train)\s+(\d+)\s*$", result.stdout, re.MULTILINE))
    return sum(int(n) for n in counts.values())


def count_designs(scratch: Path, k: int = 3, m: int = 3) -> list[tuple[str, int, int]]:
    """(design, training jobs planned, configurations × its factor) of the default config and
    sweep (on the default synthetic cohort) under each evaluation design."""
    from segsweep.config_schema import complete
    from segsweep.data.cohort import plan_cohort
    from segsweep.sweep.grammar import configurations, load_sweep, sweep_runs

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = {section: complete(base.get(section) or {}, section) for section in ("train",)}
    sweep = load_sweep(str(REPO / "config" / "sweep.yaml"))
    n = len(configurations(sweep_runs({**config, "split": {"folds": 0}}, sweep)))
    cohort = plan_cohort((base.get("data") or {}).get("synthetic") or {})
    sites = len({spec.source for spec in cohort if spec.labelled})
    designs = {
        "plain": ({"folds": 0}, n),
        f"{k}-fold": ({"folds": k}, n * k),
        "leave-one-site-out": ({"folds": "by_source"}, n * sites),
        f"nested {m}x{k}": (
            {"folds": k, "outer_folds": m, "fractions": {"train": 0.75, "val": 0.25, "test": 0}},
            m * n * k,
        ),
    }
    rows = []
    for name, (split, expected) in designs.items():
        config = copy.deepcopy(base)
        config["split"] = {**config.get("split", {}), **split}
        planned = planned_training(config, scratch / re.sub(r"\W+", "-", name))
        rows.append((name, planned, expected))
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the dry-run times and, last, `dag: t1000=… t10000=… overhead=…`."""
    parser = argparse.ArgumentParser(prog="python -m segsweep.bench dag", description=main.__doc__)
    parser.add_argument("--sizes", type=int, nargs=2, default=[1000, 10000], metavar="N")
    parser.add_argument("--folds", type=int, default=5, help="k of the configurations (0: none)")
    parser.add_argument(
        "--designs", action="store_true", help="count the training jobs of each design instead"
    )
    args = parser.parse_args(argv)
    if args.designs:
        with tempfile.TemporaryDirectory(prefix="segsweep-designs-") as tmp:
            for name, planned, expected in count_designs(Path(tmp)):
                print(
                    f"design {name}: {planned} training runs (configurations x factor: {expected})"
                )
        return
    small, large = args.sizes
    with tempfile.TemporaryDirectory(prefix="segsweep-dag-") as tmp:
        scratch = Path(tmp)
        times = {}
        for n in (small, large):
            times[("segsweep", n)] = time_segsweep(n, args.folds, scratch)
            times[("bare", n)] = time_bare(n, scratch)
            print(
                f"{n} runs ({args.folds} folds): segsweep {times[('segsweep', n)]:.1f} s, "
                f"bare {times[('bare', n)]:.1f} s",
                flush=True,
            )
    overhead = times[("segsweep", large)] / times[("bare", large)]
    print(
        f"dag: t{small}={times[('segsweep', small)]:.1f} t{large}={times[('segsweep', large)]:.1f}"
        f" overhead={overhead:.2f}"
    )


if __name__ == "__main__":
    main()
