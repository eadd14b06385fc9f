"""The halving bench: epochs, hours, choices and verdicts from two fabricated results trees."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segsweep.bench import halving

CONFIGURATIONS = ["lr-0.001", "lr-0.003", "lr-0.0003"]


def _log(folder: Path, epochs: int, seconds: float) -> None:
    folder.mkdir(parents=True)
    rows = {"epoch": range(1, epochs + 1), "time_s": [seconds] * epochs}
    pd.DataFrame(rows).to_csv(folder / "train_log.csv", index=False)


def _tree(
    workdir: Path, epochs: dict[str, int], choice: str, scores: dict[str, tuple] | None = None
) -> Path:
    """results/runs/*/train_log.csv (one 36 s epoch per row), final.csv choosing `choice` and,
    with `scores`, configurations.csv (configuration → score, ci_low, ci_high)."""
    for run, n in epochs.items():
        _log(workdir / "results" / "runs" / run, n, 36.0)
    summary = workdir / "results" / "summary"
    summary.mkdir(parents=True)
    final = [
        {"run_id": "lr-0.0003", "group": "loss=dice", "score": 0.5},
        {"run_id": choice, "group": "overall; loss=ce", "score": 0.9},
    ]
    pd.DataFrame(final).to_csv(summary / "final.csv", index=False)
    if scores:
        rows = [
            {"configuration": c, "status": "ok", "score": s, "ci_low": lo, "ci_high": hi}
            for c, (s, lo, hi) in scores.items()
        ]
        pd.DataFrame(rows).to_csv(summary / "configurations.csv", index=False)
    return workdir


SCORES = {
    "lr-0.001": (0.947, 0.93, 0.96),
    "lr-0.003": (0.941, 0.92, 0.95),
    "lr-0.0003": (0.80, 0.75, 0.85),
}


@pytest.fixture
def full(tmp_path: Path) -> Path:
    epochs = {c: 20 for c in CONFIGURATIONS}
    epochs["lr-0.001_seed-43"] = 20  # a confirmation seed: left out
    return _tree(tmp_path / "full", epochs, "lr-0.001", SCORES)


def _halving(tmp_path: Path, choice: str) -> Path:
    epochs = {"lr-0.001": 20, "lr-0.003": 4, "lr-0.0003": 4, "seed-44": 20}
    return _tree(tmp_path / "halving", epochs, choice)


def test_numbers_and_same_choice(full: Path, tmp_path: Path, capsys) -> None:
    result = halving.compare(full, _halving(tmp_path, "lr-0.001"))
    assert result["full"]["epochs"] == 60 and result["halving"]["epochs"] == 28
    assert result["full"]["hours"] == pytest.approx(0.6)
    assert result["halving"]["hours"] == pytest.approx(0.28)
    assert result["full"]["seed_runs"] == ["lr-0.001_seed-43"]
    assert result["halving"]["seed_runs"] == ["seed-44"]
    assert result["epochs_ratio"] == pytest.approx(28 / 60)
    assert result["hours_ratio"] == pytest.approx(28 / 60)
    assert not result["epochs_ok"]  # 0.47 > 0.45
    assert result["full"]["choice"] == "lr-0.001" and result["full"]["score"] == 0.9
    assert result["same_choice"] and result["acceptable"]
    halving.main(["--full", str(full), "--halving", str(_halving(tmp_path / "b", "lr-0.001"))])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("halving: 28/60 epochs (0.47), 0.28/0.60 h (0.47); chose lr-0.001")
    assert "the full grid's choice" in last
    assert last.endswith("epochs ≤ 45 %: no, choice acceptable: yes")


def test_different_choice_inside_interval(full: Path, tmp_path: Path, capsys) -> None:
    workdir = _halving(tmp_path, "lr-0.003")
    (workdir / "results" / "runs" / "lr-0.001" / "train_log.csv").unlink()  # now 8 of 60
    result = halving.compare(full, workdir)
    assert result["halving"]["epochs"] == 8 and result["epochs_ok"]
    assert result["halving"]["missing_logs"] == ["lr-0.001"]
    assert not result["same_choice"] and result["inside"] and result["acceptable"]
    assert result["choice_full_score"] == pytest.approx(0.941)
    assert result["winner_ci"] == (0.93, 0.96)
    line = halving.summary_line(result)
    assert "chose lr-0.003 (full-grid score 0.941, winner lr-0.001 0.947 [0.93, 0.96])" in line
    assert "inside the winner's 95 % interval" in line
    assert line.endswith("epochs ≤ 45 %: yes, choice acceptable: yes")


def test_different_choice_outside_interval(full: Path, tmp_path: Path) -> None:
    result = halving.compare(full, _halving(tmp_path, "lr-0.0003"))
    assert not result["inside"] and not result["acceptable"]
    line = halving.summary_line(result)
    assert "outside the winner's 95 % interval" in line
    assert line.endswith("choice acceptable: no")


def test_missing_tables_are_reported_not_raised(tmp_path: Path, capsys) -> None:
    empty_full, empty_halving = tmp_path / "f", tmp_path / "h"
    empty_full.mkdir()
    empty_halving.mkdir()
    halving.main(["--full", str(empty_full), "--halving", str(empty_halving)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "halving chose no configuration" in last or "chose None" in last
    assert last.endswith("choice acceptable: no")
