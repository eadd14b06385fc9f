"""The appendices: A, every run of the sweep; B, the configuration and the sweep as run; C,
provenance (software versions, code revision, configuration hash, what each run was trained with,
and the runtime per rule from Snakemake's benchmark files)."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from segsweep import layout
from segsweep.io.records import read_json
from segsweep.numerals import NA, number, plural
from segsweep.provenance import config_hash, git_revision, package_version
from segsweep.report.chapters.sweep_results import read_runs, runs_frame
from segsweep.report.document import Chapter, Code, Section, Table, text
from segsweep.report.inputs import ReportInputs
from segsweep.sweep.grammar import swept_names

PACKAGES = ("snakemake", "torch", "simpleitk", "numpy", "pandas")


def provenance_frame(config: dict[str, Any], sweep: dict[str, Any]) -> pd.DataFrame:
    rows = [["python", platform.python_version()]]
    rows += [[name, package_version(name)] for name in PACKAGES]
    rows += [["git revision", git_revision()], ["config hash (sha256)", config_hash(config, sweep)]]
    return pd.DataFrame(rows, columns=["Item", "Value"])


def run_provenance_frame(files: Mapping[str, str | Path]) -> pd.DataFrame | None:
    """The training runs grouped by what produced them (each run's provenance.json, by run id):
    git revision, config hash and torch version, with the number of runs and their devices;
    None without provenance files."""
    records = [read_json(files[run]) for run in sorted(files) if Path(files[run]).is_file()]
    if not records:
        return None
    frame = pd.DataFrame(
        {
            # the commit shortened to 12 digits, keeping a "+dirty" mark
            "Git revision": [r["git_revision"][:12] + r["git_revision"][40:] for r in records],
            "Config hash": [r["config_hash"][:12] for r in records],
            "torch": [r["packages"].get("torch", NA) for r in records],
            "Device": [str(r["device"]) for r in records],
        }
    )
    keys = ["Git revision", "Config hash", "torch"]
    grouped = frame.groupby(keys, sort=True)["Device"]
    table = grouped.agg(lambda d: ", ".join(sorted(set(d)))).to_frame("Devices")
    table.insert(0, "Runs", grouped.size().astype(str))
    return table.reset_index()


def benchmarks_frame(benchmarks: Mapping[str, list[str | Path]]) -> pd.DataFrame | None:
    """Runtime per rule (rule → its jobs' Snakemake benchmark files), None without any."""
    rows = []
    for rule, files in sorted(benchmarks.items()):
        tables = [pd.read_csv(f, sep="\t") for f in files if Path(f).is_file()]
        seconds = pd.concat([t["s"] for t in tables if "s" in t]) if tables else pd.Series()
        if seconds.empty:
            continue
        rows.append([rule, len(tables), number(seconds.sum(), 1), number(seconds.max(), 1)])
    if not rows:
        return None
    return pd.DataFrame(rows, columns=["Rule", "Jobs", "Total (s)", "Longest job (s)"])


def final_rows(runs_df: pd.DataFrame, final: str | Path) -> list[int]:
    """Indexes of the runs of the final models (final.csv's run ids: runs, or with folds
    configurations, whose fold runs are all marked)."""
    finals = set(pd.read_csv(final, dtype=str, keep_default_na=False)["run_id"])
    ids = [column for column in ("run_id", "configuration") if column in runs_df]
    of_final = runs_df[ids].astype(str).isin(finals).any(axis=1)
    return [i for i, marked in enumerate(of_final) if marked]


def all_runs_table(inputs: ReportInputs) -> Table:
    """Table A.1, every run of the sweep (cited from the results chapter too); in the HTML it
    can be sorted, filtered by the swept levels and searched by run id, since it can hold
    hundreds of runs."""
    runs_df = read_runs(inputs)
    frame = runs_frame(runs_df.drop(columns="error"))
    return Table.of(
        "all-runs",
        f"All {plural(len(runs_df), 'run')} of the sweep with their validation scores (score: "
        f"the selection score; {inputs.thesis.run_scores}) and what training each cost "
        "(wall-clock and CPU time and peak memory from its Snakemake benchmark; device time and "
        "memory on a GPU). "
        + (
            "The table mixes budgets: under successive halving the scores are those of the "
            "first rung, the cost and the epochs trained as trained (a pruned run stopped at the "
            "rung it was pruned at). "
            if "pruned_at" in runs_df
            else ""
        )
        + "The runs of the final models are highlighted.",
        frame,
        long=True,
        interactive=True,
        filters=[name for name in swept_names(inputs.sweep) if name in frame.columns],
        search="Run",
        marked=final_rows(runs_df, inputs.final),
        marked_label="final models",
        unit="runs",
    )


def chapters(inputs: ReportInputs, all_runs: Table) -> list[Chapter]:
    config, sweep = inputs.config, inputs.sweep
    runs = Chapter(
        "appendix-runs",
        "A",
        "All runs",
        [
            text(
                "{table} lists every run of the sweep ({path}).",
                table=all_runs,
                path=layout.RUNS_TABLE,
            ),
            all_runs,
        ],
        appendix=True,
    )
    configuration = Chapter(
        "appendix-configuration",
        "B",
        "Configuration",
        [
            text(
                "The configuration (its config files with defaults filled in) and the sweep "
                "({sweep}) that produced these results.",
                sweep=config.get("sweep", "config/sweep.yaml"),
            ),
            Section(
                "configuration",
                "Configuration",
                [Code(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))],
                numbered=False,
            ),
            Section(
                "sweep",
                "Sweep",
                [Code(yaml.safe_dump(sweep, sort_keys=False, allow_unicode=True))],
                numbered=False,
            ),
        ],
        appendix=True,
    )
    return [runs, configuration, provenance_chapter(inputs)]


def provenance_chapter(inputs: ReportInputs) -> Chapter:
    config, sweep = inputs.config, inputs.sweep
    software = Table.of(
        "provenance",
        "Software versions, code revision and configuration hash.",
        provenance_frame(config, sweep),
    )
    by_origin = run_provenance_frame(inputs.provenance)
    origins = (
        Table.of(
            "runs-provenance",
            "The training runs by the code revision, configuration hash and torch version they "
            "were trained with (their provenance.json), and the devices they used.",
            by_origin,
        )
        if by_origin is not None
        else None
    )
    bench = benchmarks_frame(inputs.benchmarks)
    runtimes = (
        Table.of("benchmarks", "Runtime per rule from Snakemake's benchmark files.", bench)
        if bench is not None
        else None
    )
    opening = text(
        "{table} records the software and the code revision that produced this document and a "
        "hash of the configuration and sweep: the same hash means the same settings.",
        table=software,
    )
    if runtimes is not None:
        opening.parts += text(
            " {table} gives the runtime of each rule from Snakemake's benchmarks.", table=runtimes
        ).parts
    blocks: list[Any] = [opening, software]
    if origins is not None:
        blocks += [
            text(
                "Each training run records its own provenance in {path} (package "
                "versions, code revision, "
                "configuration hash, host, device, start and end time); {table} groups the runs "
                "by what they were trained with.",
                path=layout.path(layout.RUN_PROVENANCE, run="<run>"),
                table=origins,
            ),
            origins,
        ]
    if runtimes is not None:
        blocks.append(runtimes)
    return Chapter("appendix-provenance", "C", "Provenance", blocks, appendix=True)
