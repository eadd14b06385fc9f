"""Faults: a training whose last attempt fails is recorded as a failed run (earlier attempts raise,
so Snakemake retries them), every later stage carries the failure along, and the report lists
the run with its error. Also the provenance every training run records.

The unit tests run on toy HDF5 splits and on the fake results tree of test_analysis; the workflow
test runs the real Snakefile with `--keep-going` on a sweep where one run's depth is too large for
its crop size (the schema allows it, the model rejects it), from the tiny cohort's
preprocessing (tests/conftest.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from runs import configure, snakemake
from test_analysis import CONFIG, SWEEP, cli_args, fail_run, write_fake_results
from test_train import HP, write_toy_h5
from tiny import TINY_CONFIG

from segsweep import provenance
from segsweep.errors import InputError
from segsweep.evaluate import select
from segsweep.evaluate import tables as evaluate
from segsweep.report.chapters.appendix import run_provenance_frame
from segsweep.report.inputs import ReportInputs
from segsweep.report.render import render_html
from segsweep.report.thesis import build_document
from segsweep.tasks import stages
from segsweep.train.failure import error_line
from segsweep.train.loop import LOG_COLUMNS

DEEP = {**HP, "depth": 6, "epochs": 1}  # 16 × 16 slices: depth 6 needs sizes divisible by 32
CPU = torch.device("cpu")


@pytest.fixture()
def data(tmp_path: Path) -> tuple[Path, Path]:
    return (
        write_toy_h5(tmp_path / "train.h5", ("a", "b", "c"), seed=1),
        write_toy_h5(tmp_path / "val.h5", ("d", "e"), seed=2),
    )


def train_args(hp: dict, data: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--hp-json",
        json.dumps(hp),
        "--train",
        str(data[0]),
        "--val",
        str(data[1]),
        "--out",
        str(out),
        "--threads",
        "1",
        *extra,
    ]


def test_provenance_hashes_versions_and_git_revision(tmp_path: Path) -> None:
    assert provenance.config_hash(CONFIG, SWEEP) == provenance.config_hash(dict(CONFIG), SWEEP)
    reordered = dict(reversed(list(HP.items())))
    assert provenance.params_hash(reordered) == provenance.params_hash(HP)
    assert provenance.params_hash({**HP, "lr": 0.1}) != provenance.params_hash(HP)
    versions = provenance.package_versions()
    assert versions["torch"] == torch.__version__ and versions["python"].count(".") == 2
    assert provenance.git_revision(tmp_path) == "unknown"  # not a checkout: never an error
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|unknown", provenance.git_revision())


def test_a_run_records_its_provenance_and_leased_device(
    data: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGSWEEP_GPU_COUNT", "2")
    monkeypatch.setenv("SEGSWEEP_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "runs" / "ok"
    hp = {**HP, "epochs": 1, "run_id": "ok"}
    stages.train(train_args(hp, data, out, "--config-hash", "c0ffee"))
    record = json.loads((out / "provenance.json").read_text())
    assert record["status"] == "ok" and record["run_id"] == "ok" and record["attempt"] == 1
    assert record["params_hash"] == provenance.params_hash(hp)
    assert record["config_hash"] == "c0ffee"
    assert record["device_index"] == 0 and record["device"] == "cpu"
    assert record["started_utc"] < record["ended_utc"]
    assert record["device_s"] is None and record["device_peak_mb"] is None  # on the CPU
    assert set(provenance.PACKAGES) <= set(record["packages"])
    assert "status" not in json.loads((out / "checkpoints" / "index.json").read_text())


def test_only_the_last_attempt_records_a_failure(data: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "runs" / "depth-6"
    args = train_args({**DEEP, "run_id": "depth-6"}, data, out, "--device", "cpu")
    with pytest.raises(ValueError, match="divisible by 32"):
        stages.train([*args, "--attempt", "1", "--max-attempts", "2"])
    assert not (out / "checkpoints" / "index.json").exists()
    assert not (out / "provenance.json").exists()
    stages.train([*args, "--attempt", "2", "--max-attempts", "2"])
    index = json.loads((out / "checkpoints" / "index.json").read_text())
    assert index["status"] == "failed" and index["attempts"] == 2 and index["checkpoints"] == []
    assert re.fullmatch(r"ValueError: U-Net of depth 6 needs .*divisible by 32.*", index["error"])
    assert yaml.safe_load((out / "params.yaml").read_text())["depth"] == 6
    assert (out / "train_log.csv").read_text() == ",".join(LOG_COLUMNS) + "\n"
    record = json.loads((out / "provenance.json").read_text())
    assert (record["status"], record["attempt"], record["device_index"]) == ("failed", 2, None)


def test_error_line_is_the_type_and_last_line() -> None:
    assert error_line(RuntimeError("CUDA out of memory.\nTried 2 GiB ")) == (
        "RuntimeError: Tried 2 GiB"
    )
    assert error_line(KeyError()) == "KeyError"


@pytest.fixture()
def failed_run(data: tuple[Path, Path], tmp_path: Path) -> Path:
    out = tmp_path / "runs" / "depth-6"
    stages.train(train_args({**DEEP, "run_id": "depth-6"}, data, out, "--device", "cpu"))
    return out


def test_select_and_evaluate_carry_the_failure(
    failed_run: Path, data: tuple[Path, Path], tmp_path: Path
) -> None:
    selection_json = failed_run / "selection.json"
    select.main(["--run-dir", str(failed_run), "--val", str(data[1]), "--out", str(selection_json)])
    selection = json.loads(selection_json.read_text())
    assert selection["status"] == "failed" and selection["selected"] is None
    assert selection["error"].startswith("ValueError: U-Net of depth 6")
    assert selection["scores"] == [] and selection["metric"] == "dice"
    val = failed_run / "val"
    argv = ["--run-dir", str(failed_run), "--selection", str(selection_json)]
    evaluate.main([*argv, "--data", str(data[1]), "--split", "val", "--out-dir", str(val)])
    per_slice = pd.read_csv(val / "per_slice.csv")
    per_patient = pd.read_csv(val / "per_patient.csv")
    assert len(per_slice) == len(per_patient) == 0
    assert {"run_id", "slice_id", "class", "dice", "volume_ref_ml"} <= set(per_slice.columns)
    assert {"patient_id", "dice", "hd95", "assd", "nsd"} <= set(per_patient.columns)
    with pytest.raises(InputError, match="a failed run has nothing to predict"):
        evaluate.main(
            [*argv, "--data", str(data[1]), "--split", "test", "--out-dir", str(tmp_path / "t")]
            + ["--predictions-dir", str(tmp_path / "p"), "--crop-dir", str(tmp_path)]
            + ["--labels-json", "{}"]
        )


def test_a_transfer_from_a_failed_run_fails_with_the_reason(
    failed_run: Path, data: tuple[Path, Path], tmp_path: Path
) -> None:
    selection_json = failed_run / "selection.json"
    select.main(["--run-dir", str(failed_run), "--val", str(data[1]), "--out", str(selection_json)])
    out = tmp_path / "runs" / "transfer"
    hp = {**HP, "epochs": 1, "init_from": "depth-6", "run_id": "transfer"}
    stages.train(
        train_args(hp, data, out, "--device", "cpu", "--init-selection", str(selection_json))
    )
    error = json.loads((out / "checkpoints" / "index.json").read_text())["error"]
    assert error.startswith("InputError") and "the source run failed" in error


def test_the_report_lists_a_failed_run_with_its_error(tmp_path: Path) -> None:
    results = write_fake_results(tmp_path)
    stages.analysis(cli_args(results))
    stages.figures(cli_args(results))  # the figures of the fake tree, before the failure
    fail_run(results, "lr-0.0001")
    stages.analysis(cli_args(results))
    html = render_html(build_document(ReportInputs.under(results, CONFIG, SWEEP, [])))
    failed = re.search(r"(\d) of the (\d) runs failed.*?Table (4\.\d)", html, re.S)
    assert failed and failed.groups()[:2] == ("1", "5"), failed
    table = html[html.index(f'<span class="label">Table {failed.group(3)}:') :]
    table = table[: table.index("</table>")]
    assert "lr-0.0001" in table and "RuntimeError: Output size is too small" in table
    assert "failed" in html[html.index('id="appendix-runs"') :]
    # left out of the statistics: the lr table has only the 0.001 level, of four runs
    assert not re.search(r"<td[^>]*>0\.0001</td>\s*<td", html[: html.index('id="appendix-runs"')])


def test_report_groups_the_runs_provenance(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for run, (revision, device) in {
        "a": ("0123456789abcdef" * 2 + "01234567+dirty", "cpu"),
        "b": ("0123456789abcdef" * 2 + "01234567+dirty", "cuda:1"),
        "c": ("unknown", "cpu"),
    }.items():
        record = {
            "git_revision": revision,
            "config_hash": "f" * 64,
            "packages": {"torch": "2.0"},
            "device": device,
        }
        (runs / run).mkdir(parents=True)
        (runs / run / "provenance.json").write_text(json.dumps(record))
    table = run_provenance_frame({run: runs / run / "provenance.json" for run in "abc"})
    assert table.values.tolist() == [
        ["0123456789ab+dirty", "ffffffffffff", "2.0", "2", "cpu, cuda:1"],
        ["unknown", "ffffffffffff", "2.0", "1", "cpu"],
    ]
    assert run_provenance_frame({"a": tmp_path / "nothing.json"}) is None


# ------------------------------------------------------------------ the real workflow
@pytest.mark.workflow
def test_with_keep_going_the_report_lists_the_failed_run(seeded) -> None:
    tmp_path = seeded("faults")  # the tiny cohort's preprocessing; the crops rerun at size 24
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config["preprocess"]["crop"]["size"] = 24  # depth 6 needs a multiple of 32
    config["train"].update(epochs=1)
    config["train_retries"] = 1
    configure(tmp_path, config, {"grids": {"depth": {"depth": [2, 6]}}})
    result = snakemake(tmp_path, "--keep-going")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert len(re.findall(r"Error in rule train:", log)) == 1  # attempt 1 of depth-6, retried
    index = json.loads((tmp_path / "results/runs/depth-6/checkpoints/index.json").read_text())
    assert index["status"] == "failed" and index["attempts"] == 2
    runs = pd.read_csv(tmp_path / "results/summary/runs.csv", keep_default_na=False)
    assert runs.set_index("run_id")["status"].to_dict() == {"default": "ok", "depth-6": "failed"}
    final = pd.read_csv(tmp_path / "results/summary/final.csv")
    assert final["run_id"].tolist() == ["default"]
    html = (tmp_path / "results/report/thesis.html").read_text()
    assert "1 of the 2 runs failed" in html
    assert re.search(r"<td[^>]*>depth-6</td>\s*<td[^>]*>ValueError: U-Net of depth 6", html)
    provenance_of = json.loads((tmp_path / "results/runs/default/provenance.json").read_text())
    assert provenance_of["config_hash"] in html  # the run's hash is the report's
    assert (tmp_path / "results/report/thesis.pdf").stat().st_size > 0
    # the failed run is a result: a rerun trains nothing unless asked
    again = snakemake(tmp_path, "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
