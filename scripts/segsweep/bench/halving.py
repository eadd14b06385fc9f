"""Successive halving against the full grid: two finished working directories of the same sweep,
one with `budget: {method: none}` (every configuration to train.epochs) and one with
`budget: {method: halving}` (config/sweeps/halving.yaml).

Per directory: the run-epochs trained (the rows of every results/runs/*/train_log.csv; a pruned
run's log ends at its rung), the training hours (the logs' `time_s` / 3600), the chosen
configuration and its score (the first row of results/summary/final.csv whose `group` names
"overall"). Runs whose id carries a seed (`_seed-…` or `seed-…`: confirmation seeds) are left
out of both sums and counted apart. Then the ratios halving / full (target: epochs ≤ 45 %) and
whether the halving choice is acceptable: the full grid's choice itself, or a configuration whose
full-grid out-of-fold score (the FULL run's results/summary/configurations.csv) lies inside the
full-grid winner's 95 % bootstrap interval [ci_low, ci_high]. Last line:
`halving: E/F epochs (r), h/H h (r); chose X (…): verdict; epochs ≤ 45 %: yes, choice
acceptable: yes`. The exit code is 0 whatever the verdict: this is a report.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import pandas as pd

from segsweep import layout

TARGET = 0.45  # the halving run may train at most this fraction of the full grid's epochs
LEVELS = ("patient", "slice", "study", "image")


def is_seed_run(run_id: str) -> bool:
    """Whether a run id names a seeded (confirmation) run: `…_seed-<s>` or `seed-<s>…`."""
    return "_seed-" in run_id or run_id.startswith("seed-")


def training(workdir: Path) -> dict[str, Any]:
    """Run-epochs and hours over results/runs/*/train_log.csv of `workdir`, seeded runs apart:
    runs, epochs, hours, seed_runs (the ids left out), missing_logs (run folders without one)."""
    runs_dir = Path(workdir) / Path(layout.RUN_DIR).parent
    epochs, seconds, runs, seeds, missing = 0, 0.0, 0, [], []
    folders = sorted(p for p in runs_dir.glob("*") if p.is_dir()) if runs_dir.is_dir() else []
    for folder in folders:
        if is_seed_run(folder.name):
            seeds.append(folder.name)
            continue
        log_path = folder / Path(layout.RUN_LOG).name
        if not log_path.is_file():
            missing.append(folder.name)
            continue
        log = pd.read_csv(log_path)
        runs += 1
        epochs += len(log)
        if "time_s" in log:
            seconds += float(pd.to_numeric(log["time_s"], errors="coerce").fillna(0).sum())
    return {
        "runs": runs,
        "epochs": epochs,
        "hours": seconds / 3600,
        "seed_runs": seeds,
        "missing_logs": missing,
    }


def chosen(workdir: Path) -> tuple[str | None, float]:
    """(run_id, score) of the first row of final.csv whose group names "overall"; (None, NaN)
    without the file or such a row."""
    path = Path(workdir) / layout.FINAL
    if not path.is_file():
        return None, math.nan
    final = pd.read_csv(path, dtype={"run_id": str, "group": str})
    overall = final[final["group"].fillna("").str.contains("overall")]
    if overall.empty:
        return None, math.nan
    row = overall.iloc[0]
    return str(row["run_id"]), float(row["score"])


def configuration_scores(workdir: Path, level: str | None = None) -> pd.DataFrame:
    """configurations.csv of `workdir` indexed by configuration (score, ci_low, ci_high); only
    the rows of `level` if the table has a `level` column; empty without the file."""
    path = Path(workdir) / layout.CONFIGURATIONS_TABLE
    columns = ["score", "ci_low", "ci_high"]
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    table = pd.read_csv(path, dtype={"configuration": str})
    if level is not None and "level" in table:
        table = table[table["level"].astype(str) == level]
    table = table.drop_duplicates("configuration").set_index("configuration")
    return table.reindex(columns=columns).astype(float)


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def compare(full: Path, halving: Path, level: str | None = None) -> dict[str, Any]:
    """The comparison of a full-grid and a halving working directory (module docstring): per run
    its training sums and choice, the ratios, the full-grid scores of both choices and the
    winner's interval, and the verdicts `epochs_ok`, `inside` and `acceptable`."""
    runs = {"full": training(Path(full)), "halving": training(Path(halving))}
    for name, workdir in (("full", full), ("halving", halving)):
        runs[name]["choice"], runs[name]["score"] = chosen(Path(workdir))
    table = configuration_scores(Path(full), level)
    winner, pick = runs["full"]["choice"], runs["halving"]["choice"]

    def row(configuration: str | None) -> dict[str, float]:
        if configuration is None or configuration not in table.index:
            return {"score": math.nan, "ci_low": math.nan, "ci_high": math.nan}
        return {k: float(v) for k, v in table.loc[configuration].items()}

    winner_row, pick_row = row(winner), row(pick)
    if math.isnan(winner_row["score"]):
        winner_row["score"] = runs["full"]["score"]
    same = pick is not None and pick == winner
    low, high, score = winner_row["ci_low"], winner_row["ci_high"], pick_row["score"]
    inside = same or (not any(math.isnan(v) for v in (low, high, score)) and low <= score <= high)
    epochs_ratio = _ratio(runs["halving"]["epochs"], runs["full"]["epochs"])
    return {
        **runs,
        "epochs_ratio": epochs_ratio,
        "hours_ratio": _ratio(runs["halving"]["hours"], runs["full"]["hours"]),
        "epochs_ok": not math.isnan(epochs_ratio) and epochs_ratio <= TARGET,
        "winner": winner,
        "winner_score": winner_row["score"],
        "winner_ci": (low, high),
        "choice": pick,
        "choice_full_score": score if not same else winner_row["score"],
        "same_choice": same,
        "inside": inside,
        "acceptable": pick is not None and inside,
    }


def _number(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def _fixed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def verdict(result: dict[str, Any]) -> str:
    """Why the halving choice is or is not acceptable, in words."""
    if result["choice"] is None:
        return "the halving run chose no configuration"
    if result["same_choice"]:
        return "the full grid's choice"
    if result["winner"] is None:
        return "the full grid chose no configuration"
    if math.isnan(result["choice_full_score"]):
        return "not scored in the full grid's configurations.csv"
    if any(math.isnan(v) for v in result["winner_ci"]):
        return "the full-grid winner has no 95 % interval"
    where = "inside" if result["inside"] else "outside"
    return f"{where} the winner's 95 % interval"


def summary_line(result: dict[str, Any]) -> str:
    """The last line of the report (module docstring)."""
    full, halving = result["full"], result["halving"]
    low, high = result["winner_ci"]
    if result["same_choice"]:
        chose = f"chose {result['choice']} (full-grid score {_number(result['winner_score'])})"
    else:
        chose = (
            f"chose {result['choice']} (full-grid score {_number(result['choice_full_score'])},"
            f" winner {result['winner']} {_number(result['winner_score'])}"
            f" [{_number(low, 2)}, {_number(high, 2)}])"
        )
    return (
        f"halving: {halving['epochs']}/{full['epochs']} epochs ({_fixed(result['epochs_ratio'])}), "
        f"{halving['hours']:.2f}/{full['hours']:.2f} h ({_fixed(result['hours_ratio'])}); "
        f"{chose}: {verdict(result)}; epochs ≤ {TARGET * 100:.0f} %: {_yes(result['epochs_ok'])}, "
        f"choice acceptable: {_yes(result['acceptable'])}"
    )


def main(argv: list[str] | None = None) -> None:
    """Print both runs' epochs, hours and choice, the ratios, the verdicts and, last, the
    summary line; exit code 0 whatever the verdict."""
    parser = argparse.ArgumentParser(
        prog="python -m segsweep.bench halving", description=main.__doc__
    )
    parser.add_argument("--full", type=Path, required=True, help="working directory, method none")
    parser.add_argument("--halving", type=Path, required=True, help="the same grid, halving")
    parser.add_argument(
        "--level",
        choices=LEVELS,
        default="patient",
        help="the level the 95 %% intervals are bootstrapped over (rows of configurations.csv "
        "with a level column)",
    )
    args = parser.parse_args(argv)
    result = compare(args.full, args.halving, args.level)
    for name, workdir in (("full grid", args.full), ("halving", args.halving)):
        run = result["full" if name == "full grid" else "halving"]
        print(
            f"{name} ({workdir}): {run['runs']} runs, {run['epochs']} run-epochs, "
            f"{run['hours']:.2f} h; chose {run['choice']} (score {_number(run['score'])})",
            flush=True,
        )
        if run["seed_runs"]:
            print(f"  left out {len(run['seed_runs'])} seeded (confirmation) runs")
        if run["missing_logs"]:
            print(f"  no train_log.csv in {len(run['missing_logs'])} run folders")
    print(
        f"epochs halving/full {_fixed(result['epochs_ratio'])} (target ≤ {TARGET:.2f}): "
        f"{_yes(result['epochs_ok'])}; hours halving/full {_fixed(result['hours_ratio'])}"
    )
    low, high = result["winner_ci"]
    print(
        f"full-grid winner {result['winner']}: {_number(result['winner_score'])}, 95 % interval "
        f"over {args.level}s [{_number(low)}, {_number(high)}]; halving's choice "
        f"{result['choice']} scores {_number(result['choice_full_score'])} in the full grid: "
        f"{verdict(result)}"
    )
    print(summary_line(result))


if __name__ == "__main__":
    main()
