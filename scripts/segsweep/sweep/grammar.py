"""The sweep grammar of `config/sweep.yaml`: fixed overrides, named cartesian grids, repeats,
and the folds of cross-validation.

A configuration is one combination of hyperparameter values. Its id is derived from the values
alone, so it does not depend on grid names or order: it lists, sorted by name, every
hyperparameter whose value differs from the base (train defaults with `fixed` applied), e.g.
`labels-separate_loss-cross_entropy`; the configuration equal to the base is `default`.
Consequences the workflow relies on: reordering or renaming grids retrains nothing, adding a
value or a grid adds only the new combinations, and the same combination reached from two grids
is one configuration.

Without cross-validation (`split.folds: 0`) a configuration is trained by one run of the same
id. With `split.folds: k` it is trained by k runs, one per fold, `<configuration>_fold-<i>`,
whose hyperparameters add `fold: i` (set here, never swept).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from segsweep.config_schema import complete
from segsweep.errors import ConfigError

SWEEP_KEYS = ("fixed", "grids", "repeats", "budget", "confirm")
MAX_ID_LENGTH = 120


@dataclass(frozen=True)
class Run:
    """One training run: its id, all effective hyperparameters, the values of swept ones, the
    configuration it trains (its own id without folds) and its fold (None without folds)."""

    run_id: str
    params: dict[str, Any] = field(hash=False)
    values: dict[str, Any] = field(hash=False)
    configuration: str = ""
    fold: int | None = None
    setting: str = ""  # the configuration without its seed (its id at the base seed)

    def __post_init__(self) -> None:
        if not self.configuration:
            object.__setattr__(self, "configuration", self.run_id)
        if not self.setting:
            object.__setattr__(self, "setting", self.configuration)


def fold_run_id(configuration: str, fold: int) -> str:
    """The id of the run that trains `configuration` on fold `fold`."""
    return f"{configuration}_fold-{fold}"


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep file safely (never `yaml.load`); an empty file is an empty sweep."""
    with open(path) as handle:
        sweep = yaml.safe_load(handle) or {}
    if not isinstance(sweep, dict):
        raise ConfigError("sweep", sweep, "a mapping with keys " + ", ".join(SWEEP_KEYS))
    return sweep


def format_value(value: Any) -> str:
    """A short, path-safe text for one hyperparameter value (1e-4 → 0.0001, True → true)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format(value, ".6g")
    elif isinstance(value, list | tuple):
        text = "+".join(format_value(v) for v in value)
    elif value is None:
        text = "none"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9.+\-]", "-", text)


def run_id(params: dict[str, Any], base: dict[str, Any]) -> str:
    """The stable id of a run: `name-value` for every value differing from the base, sorted."""
    parts = [f"{k}-{format_value(v)}" for k, v in sorted(params.items()) if base.get(k) != v]
    text = "_".join(parts) or "default"
    if len(text) > MAX_ID_LENGTH:  # keep paths legal; the hash keeps the id unique and stable
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        text = f"{text[: MAX_ID_LENGTH - 11]}~{digest}"
    return text


def _check_names(names: list[str], defaults: dict[str, Any], where: str) -> None:
    unknown = sorted(set(names) - set(defaults))
    if unknown:
        raise ConfigError(where, unknown, "known hyperparameters: " + ", ".join(sorted(defaults)))


def swept_names(sweep: dict[str, Any]) -> list[str]:
    """Hyperparameters that vary in the sweep: every grid key, plus `seed` with repeats > 1."""
    names = {name for grid in (sweep.get("grids") or {}).values() for name in grid}
    if int(sweep.get("repeats", 1)) > 1:
        names.add("seed")
    return sorted(names)


def expand_sweep(
    sweep: dict[str, Any], defaults: dict[str, Any], validate=None, folds: int = 0
) -> list[Run]:
    """All runs of a sweep, duplicates collapsed: configurations sorted by id, with `folds`
    (k ≥ 2) each configuration's k fold runs in fold order.

    `validate`, when given, checks a parameter set and raises on invalid values (the Snakefile
    passes a JSON-schema check of the `train` section). It is called for the base and once per
    distinct grid value rather than per run, which keeps 10,000-run sweeps cheap to plan.
    """
    unknown_keys = sorted(set(sweep) - set(SWEEP_KEYS))
    if unknown_keys:
        raise ConfigError("sweep", unknown_keys, "top-level keys " + ", ".join(SWEEP_KEYS))
    fixed = dict(sweep.get("fixed") or {})
    _check_names(list(fixed), defaults, "sweep.fixed")
    base = {**defaults, **fixed}
    repeats = sweep.get("repeats", 1)
    if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
        raise ConfigError("sweep.repeats", repeats, "an integer >= 1")
    if validate is not None:
        validate(base)
    grids = sweep.get("grids") or {"default": {}}
    names = swept_names(sweep)
    runs: dict[str, Run] = {}
    for grid_name in sorted(grids):
        grid = grids[grid_name] or {}
        if not isinstance(grid, dict):
            raise ConfigError(f"sweep.grids.{grid_name}", grid, "a mapping name → list of values")
        _check_names(list(grid), defaults, f"sweep.grids.{grid_name}")
        keys = sorted(grid)
        levels = []
        for key in keys:
            values = grid[key]
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep.grids.{grid_name}.{key}", values, "a non-empty list")
            if validate is not None:
                for value in values:
                    validate({**base, key: value})
            levels.append(values)
        for combination in itertools.product(*levels):
            params = {**base, **dict(zip(keys, combination, strict=True))}
            setting = run_id(params, base) if repeats > 1 else ""
            for repeat in range(repeats):
                seeded = {**params, "seed": params["seed"] + repeat}
                rid = run_id(seeded, base)
                if rid in runs and runs[rid].params != seeded:
                    raise ConfigError("sweep", rid, "combinations with distinct run ids")
                values = {n: seeded[n] for n in names}
                runs[rid] = Run(rid, seeded, values, setting=setting or rid)
    return with_folds([runs[rid] for rid in sorted(runs)], folds)


def with_folds(configurations: list[Run], folds: int) -> list[Run]:
    """The runs that train `configurations`: themselves without folds, else each
    configuration's `folds` fold runs in fold order."""
    if not folds:
        return configurations
    return [
        Run(fold_run_id(c.run_id, i), {**c.params, "fold": i}, c.values, c.run_id, i, c.setting)
        for c in configurations
        for i in range(folds)
    ]


def confirmation_runs(
    config: dict[str, Any], sweep: dict[str, Any], runs: list[Run]
) -> dict[str, list[Run]]:
    """The runs that would confirm each setting of `runs` (a configuration without its seed)
    with `confirm.seeds` more seeds, by setting: the seeds after the sweep's `repeats` (base
    seed + repeats, + repeats + 1, …), named as the sweep names seeded runs (`seed-<s>` in the
    id), with their folds. Which settings are confirmed is decided after the sweep; none
    without `confirm.top`."""
    confirm = sweep.get("confirm") or {}
    if not int(confirm.get("top", 0)):
        return {}
    base = {**config["train"], **(sweep.get("fixed") or {})}
    repeats = int(sweep.get("repeats", 1))
    names = sorted({*swept_names(sweep), "seed"})
    folds = int((config.get("split") or {}).get("folds") or 0)
    first = {}
    for run in runs:
        first.setdefault(run.setting, run)
    confirming = {}
    for setting, run in first.items():
        extra = []
        for j in range(int(confirm.get("seeds", 2))):
            params = {k: v for k, v in run.params.items() if k != "fold"}
            params["seed"] = base["seed"] + repeats + j
            rid = run_id(params, base)
            extra.append(Run(rid, params, {n: params[n] for n in names}, setting=setting))
        confirming[setting] = with_folds(extra, folds)
    return confirming


def sweep_runs(config: dict[str, Any], sweep: dict[str, Any], validate=None) -> list[Run]:
    """The runs of the workflow: the sweep over the config's train defaults, with the folds of
    `split.folds`."""
    folds = int((config.get("split") or {}).get("folds") or 0)
    return expand_sweep(sweep, config["train"], validate, folds)


def seed_noise(sweep: dict[str, Any]) -> bool:
    """Whether settings train with several seeds (`repeats` ≥ 2, or a confirmation of the top
    settings): then the thesis measures the seed-to-seed spread under the ranking."""
    confirm = sweep.get("confirm") or {}
    return int(sweep.get("repeats", 1)) > 1 or int(confirm.get("top", 0)) > 0


def every_run(config: dict[str, Any], sweep: dict[str, Any]) -> dict[str, Run]:
    """Run id → run, for the sweep's runs and every run that could confirm one of its settings
    (`confirmation_runs`): what a stage handed run ids looks them up in."""
    runs = sweep_runs(config, sweep)
    confirming = confirmation_runs(config, sweep, runs)
    return {r.run_id: r for r in [*runs, *(r for rs in confirming.values() for r in rs)]}


def configurations(runs: list[Run]) -> dict[str, list[Run]]:
    """Configuration id → its runs (one without folds, k with), in the order of `runs`."""
    grouped: dict[str, list[Run]] = {}
    for run in runs:
        grouped.setdefault(run.configuration, []).append(run)
    return grouped


def main(argv: list[str] | None = None) -> None:
    """List the runs of a sweep: one JSON object per line with the run id and swept values."""
    parser = argparse.ArgumentParser(prog="segsweep sweep", description=main.__doc__)
    parser.add_argument("--sweep", default="config/sweep.yaml", help="sweep file")
    parser.add_argument("--config", default="config/config.yaml", help="config with train defaults")
    args = parser.parse_args(argv)
    with open(args.config) as handle:
        config = yaml.safe_load(handle) or {}
    config = {**config, "train": complete(config.get("train") or {}, "train")}
    for run in sweep_runs(config, load_sweep(args.sweep)):
        fold = {} if run.fold is None else {"configuration": run.configuration, "fold": run.fold}
        print(json.dumps({"run_id": run.run_id, **fold, **run.values}, sort_keys=True))


if __name__ == "__main__":
    main()
