"""The real Snakefile on a tiny synthetic cohort in a tmp dir, all the way to the thesis report.

The session's tiny run (tests/conftest.py `tiny_run`, through SLURM where it is installed) is
shared by the tests of this module and test_slurm; the tests check contents against the CSVs
the workflow wrote, and the incremental behaviour of the sweep (on dry runs, or on a copy).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pdf_text import captions
from runs import IN_CI, REPO, planned_jobs, snakemake
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata
from test_latex import PDFLATEX, compile_twice, undefined_references
from test_report import check_summary, pdf_pages
from tiny import TINY_SWEEP

from segsweep import layout
from segsweep.numerals import significant
from segsweep.sweep.stats import bootstrap_ci
from segsweep.train.events import tag

# Visual checks (headless Chromium screenshots thesis.html, poppler renders and reads the PDF)
# are skipped only where the binaries are missing and CI is not set; in CI a missing one fails.
CHROMIUM = next(
    (shutil.which(n) for n in ["chromium", "chromium-browser"] if shutil.which(n)), None
)
PDFTOPPM = shutil.which("pdftoppm")
PDFTOTEXT = shutil.which("pdftotext")

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workdir(tiny_run) -> Path:
    """The session's tiny run (tests/conftest.py), through SLURM where it is installed."""
    return tiny_run.root


def test_every_run_has_its_files_and_only_final_runs_see_the_test_set(workdir: Path) -> None:
    runs = sorted(p.name for p in (workdir / "results/runs").iterdir())
    assert runs == [
        "default",
        "labels-separate",
        "labels-separate_loss-cross-entropy",
        "loss-cross-entropy",
    ]
    for run in runs:
        folder = workdir / "results/runs" / run
        for name in [
            "params.yaml",
            "train_log.csv",
            "selection.json",
            "val/per_patient.csv",
            "val/per_slice.csv",
            "checkpoints/index.json",
        ]:
            assert (folder / name).is_file(), f"{run}: {name}"
        selection = json.loads((folder / "selection.json").read_text())
        index = json.loads((folder / "checkpoints/index.json").read_text())
        assert len(selection["scores"]) == len(index["checkpoints"]) == 2
    final = pd.read_csv(workdir / "results/summary/final.csv")
    assert sorted((workdir / "results/final").iterdir()) == sorted(
        workdir / "results/final" / run for run in final["run_id"]
    )
    for run in final["run_id"]:
        per_patient = pd.read_csv(workdir / "results/final" / run / "test/per_patient.csv")
        assert set(per_patient["split"]) == {"test"}
        assert list((workdir / "results/final" / run / "predictions").glob("*.nii.gz"))


def test_final_model_is_the_best_on_validation(workdir: Path) -> None:
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    final = pd.read_csv(workdir / "results/summary/final.csv")
    assert final["run_id"].tolist() == [runs.loc[runs["score"].idxmax(), "run_id"]]


def test_report_tables_hold_the_numbers_of_the_csvs(workdir: Path) -> None:
    html = (workdir / "results/report/thesis.html").read_text()
    for column in ["Min", "Max", "STD", "Mean", "Median", "No. experiments"]:
        assert f">{column}<" in html
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    for name in ["loss", "labels"]:
        for level, scores in runs.groupby(name)["score"]:
            assert f"{scores.mean():.3f}" in html, (name, level)
            assert f"{scores.median():.3f}" in html, (name, level)
    pairs = pd.read_csv(workdir / "results/tables/pairs.csv")
    for _, row in pairs.iterrows():
        cell = f"{row['mean']:.3f}/{row['median']:.3f} ({row['count']})"
        assert cell in html
    assert re.search(r"Table \d+(\.\d+)?", html) and re.search(r"Figure \d+(\.\d+)?", html)
    assert html.count("data:image/svg+xml;base64,") >= 4  # jitter plots, boxplots, curves
    classes = pd.read_csv(workdir / "results/tables/class_summary.csv")
    assert set(classes["split"]) == {"val", "test"} and "foreground" in set(classes["class"])
    assert set(classes["metric"]) == {"dice", "iou", "hd95", "nsd"}
    assert html.count("</span> Per-class per-patient Dice, IoU, HD95 and NSD (τ = ") == 2
    for _, row in classes.iterrows():
        assert row.tolist()[5:] == class_statistics(workdir, row), row.tolist()
        if row["metric"] == "dice":
            assert f">{row['class']}<" in html
        if not pd.isna(row["mean"]):
            std = "–" if pd.isna(row["std"]) else f"{row['std']:.3f}"
            assert f"{row['mean']:.3f} ({row['median']:.3f}) ± {std}" in html, row.tolist()


def class_statistics(workdir: Path, row: pd.Series) -> list:
    """Patients, undefined, mean, median, STD and the bootstrap interval of the mean of one
    class_summary.csv row, recomputed from the final model's per_patient.csv (validation from
    its run, test from the final stage)."""
    stage = "runs" if row["split"] == "val" else "final"
    folder = workdir / "results" / stage / row["run_id"] / row["split"]
    table = pd.read_csv(folder / "per_patient.csv")
    rows = (table["class"] == row["class"]) & (table["space"] == row["space"])
    values = table.loc[rows, row["metric"]]
    defined = values.dropna()
    stats = [defined.mean(), defined.median(), defined.std(ddof=1), *bootstrap_ci(defined)]
    return [len(values), int(values.isna().sum()), *(pytest.approx(v, nan_ok=True) for v in stats)]


def test_pdf_has_several_pages(workdir: Path) -> None:
    pdf = (workdir / "results/report/thesis.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    assert pdf_pages(pdf) > 1


def thesis_captions(html: str) -> dict[str, str]:
    """Label ("Table 3.2") → the caption's text after the label, from thesis.html."""
    label = r'<figcaption><span class="label">((?:Table|Figure) [0-9A-Z]+\.\d+):</span>'
    found = re.findall(label + r"(.*?)</figcaption>", html, flags=re.S)
    return {
        label: " ".join(unescape(re.sub(r"<[^>]+>", "", text)).split()) for label, text in found
    }


@pytest.mark.skipif(PDFTOTEXT is None and not IN_CI, reason="pdftotext not installed")
def test_every_caption_shares_its_page_with_its_table_or_figure(workdir: Path) -> None:
    assert PDFTOTEXT, "CI must install poppler-utils"
    html = (workdir / "results/report/thesis.html").read_text()
    texts = thesis_captions(html)
    found, pages = captions(workdir / "results/report/thesis.pdf", texts)
    assert sorted(c.label for c in found) == sorted(texts), "every caption found once"
    for caption in found:
        assert caption.before or caption.after, f"page {caption.page} holds only {caption.label}"
        if caption.label.startswith("Table"):  # caption above: the table follows on its page
            assert caption.after > 0, f"{caption.label} ends page {caption.page}, its table not"
        else:  # caption below: the figure's text stands before it on its page
            assert caption.before > 0, f"{caption.label} opens page {caption.page}"
    assert all(words for words in pages[1:]), "no empty page"


def test_the_summary_claims_only_what_its_tables_show(workdir: Path) -> None:
    check_summary((workdir / "results/report/thesis.html").read_text())


def latex_labels(folder: Path) -> dict[str, str]:
    """LaTeX label → the first sentence of its caption (the short one, for the lists) with
    numbers masked: what the table or figure is, not how many runs it counts or which lie on
    a front; over the kit's tables and chapter.tex."""
    sources = [folder / "chapter.tex", *sorted((folder / "tables").glob("*.tex"))]
    found = {}
    for source in sources:
        for caption, label in re.findall(
            r"\\caption\[\{(.*?)\}\]\{.*?\}\\label\{((?:tab|fig):[^}]+)\}", source.read_text()
        ):
            found[label] = re.sub(r"\d+(\.\d+)?", "#", caption)
    return found


@pytest.mark.latex
@pytest.mark.skipif(PDFLATEX is None and not IN_CI, reason="pdflatex not installed")
def test_the_latex_kit_compiles_and_its_labels_survive_a_rerun_that_adds_a_grid(
    workdir: Path, tmp_path: Path
) -> None:
    assert PDFLATEX, "CI must install texlive-latex-recommended"
    kit = workdir / "results/report/latex"
    html = (workdir / "results/report/thesis.html").read_text()
    assert len(list((kit / "tables").glob("*.tex"))) == html.count('<figure class="table')
    figures = sorted((kit / "figures").glob("*.pdf"))
    assert len(figures) == html.count('<figure class="figure"')
    fonts = subprocess.run(["pdffonts", str(figures[0])], capture_output=True, text=True).stdout
    assert all(line.split()[-5] == "yes" for line in fonts.splitlines()[2:]), fonts  # embedded
    copy = tmp_path / "latex"
    shutil.copytree(kit, copy)
    log = compile_twice(copy)
    assert not undefined_references(log), undefined_references(log)
    before = latex_labels(kit)
    assert {"tab:hp-loss", "tab:pair-loss-labels", "fig:jitter-loss", "tab:all-runs"} <= set(before)

    rerun = tmp_path / "rerun"
    shutil.copytree(workdir, rerun, symlinks=True)
    sweep = yaml.safe_load(yaml.safe_dump(TINY_SWEEP))
    sweep["grids"]["lr"] = {"lr": [0.001, 0.01]}  # one new run, and a new swept hyperparameter
    (rerun / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    result = snakemake(rerun, "results/report/latex")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = latex_labels(rerun / "results/report/latex")
    assert {"tab:hp-lr", "fig:jitter-lr"} <= set(after) - set(before)
    assert {label: after.get(label) for label in before} == before


def test_second_dry_run_has_nothing_to_do(workdir: Path) -> None:
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Nothing to be done" in result.stdout + result.stderr


def test_editing_the_title_reruns_only_the_report(workdir: Path) -> None:
    """A rule's params carry only the keys its step reads: the title is the report's alone."""
    original = (workdir / "config.yaml").read_text()
    config = yaml.safe_load(original)
    config["report"] = {**config.get("report", {}), "title": "Another title"}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    try:
        result = snakemake(workdir, "--dry-run")
    finally:
        (workdir / "config.yaml").write_text(original)
    assert result.returncode == 0, result.stderr[-3000:]
    assert planned_jobs(result) == {"report": 1, "all": 1}, result.stdout[-3000:]


def plan_with_sweep(workdir: Path, sweep: dict, restore: dict) -> subprocess.CompletedProcess:
    """A dry run of the workflow in `workdir` with `sweep`, then its sweep file back to
    `restore`; fails the test when Snakemake does."""
    (workdir / "config" / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    try:
        result = snakemake(workdir, "--dry-run")
    finally:
        (workdir / "config" / "sweep.yaml").write_text(yaml.safe_dump(restore))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_adding_a_value_trains_only_the_new_combinations(workdir: Path) -> None:
    sweep = yaml.safe_load(yaml.safe_dump(TINY_SWEEP))
    sweep["grids"]["loss_vs_labels"]["labels"].append("separate")  # duplicates collapse
    sweep["grids"]["lr"] = {"lr": [0.001, 0.01]}
    result = plan_with_sweep(workdir, sweep, TINY_SWEEP)
    jobs = planned_jobs(result)
    assert jobs["train"] == 1 and jobs["select"] == 1, jobs
    assert "lr-0.01" in result.stdout


# Per-subject preprocessing makes every subject's crop (crop_mask reads the crop's geometry), and
# the rules that build the packed datasets declare every labelled crop as input (the split is
# decided at run time) but read only the subjects of their own split (tests/test_pack.py). Every
# other rule must never see test data, and only the final-model rule may read the packed test set.
DATA_PREPARATION = {"crop_mask", "pack", "normalisation"}
FINAL_MODEL_RULES = {"final_test"}
SELECTION_RULES = {"train", "select", "choose_final"}


def find_test_data_leaks(summary: pd.DataFrame, test_subjects: set[str]) -> list[str]:
    """'rule: input' for every job input that is test data outside the rules allowed to read it.

    Test data: results/datasets/test.h5, the cropped images and masks (.nii.gz) of test subjects
    under results/crop/ (their crop QC picture is preprocessing QC, not data), and —
    for the rules that train, select or choose — anything derived from the test set
    (results/final/).
    """
    crops = tuple(f"results/crop/{s}/" for s in sorted(test_subjects))
    violations = []
    for row in summary.itertuples(index=False):
        rule = row.rule
        for path in str(row.inputs).split(","):
            is_test_h5 = path.endswith("results/datasets/test.h5")
            is_test_crop = path.startswith(crops) and path.endswith(".nii.gz")
            if is_test_h5 and rule not in FINAL_MODEL_RULES:
                violations.append(f"{rule}: {path}")
            elif is_test_crop and rule not in FINAL_MODEL_RULES | DATA_PREPARATION:
                violations.append(f"{rule}: {path}")
            elif path.startswith("results/final/") and rule in SELECTION_RULES:
                violations.append(f"{rule}: {path}")
    return sorted(set(violations))


def detailed_summary(workdir: Path) -> pd.DataFrame:
    """Every output file of the DAG with the rule that makes it and that job's inputs."""
    result = snakemake(workdir, "--detailed-summary", "--nolock")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line.split("\t") for line in result.stdout.splitlines() if "\t" in line]
    header = lines[0]
    rows = [dict(zip(header, line, strict=False)) for line in lines[1:]]
    return pd.DataFrame(
        {"rule": [r["rule"] for r in rows], "inputs": [r.get("input-file(s)", "") for r in rows]}
    )


def test_only_the_final_model_rule_reads_test_data(workdir: Path) -> None:
    """The DAG of the completed run (final models known, so final_test jobs are in it)."""
    summary = detailed_summary(workdir)
    splits = pd.read_csv(workdir / "results/splits/splits.csv")
    test_subjects = set(splits.loc[splits["split"] == "test", "subject_id"])
    assert test_subjects and set(summary["rule"]) >= {"final_test", "select", "pack", "report"}
    final_inputs = ",".join(summary.loc[summary["rule"] == "final_test", "inputs"])
    assert "results/datasets/test.h5" in final_inputs  # the guard looks at real inputs
    assert find_test_data_leaks(summary, test_subjects) == []
    # and it fails when a selection rule reads the test set
    leaked = pd.concat(
        [summary, pd.DataFrame({"rule": ["select"], "inputs": ["results/datasets/test.h5"]})]
    )
    assert find_test_data_leaks(leaked, test_subjects) == ["select: results/datasets/test.h5"]


def test_final_models_export_native_predictions_scored_in_both_spaces(workdir: Path) -> None:
    import SimpleITK as sitk

    html = (workdir / "results/report/thesis.html").read_text()
    final = pd.read_csv(workdir / "results/summary/final.csv")
    splits = pd.read_csv(workdir / "results/splits/splits.csv")
    unlabelled = set(splits.loc[splits["split"] == "unlabelled", "subject_id"])
    for run in final["run_id"]:
        folder = workdir / "results/final" / run
        per_patient = pd.read_csv(folder / "test/per_patient.csv")
        assert set(per_patient["space"]) == {"processed", "native"}
        for metric in ("hd95", "nsd"):  # undefined only where both masks are empty
            assert per_patient[metric][per_patient["dice"].notna()].notna().all()
        for path in (folder / "predictions_native").glob("*.nii.gz"):
            record = json.loads(
                (workdir / "results/data" / path.name[:-7] / "ingest.json").read_text()
            )
            assert list(sitk.ReadImage(str(path)).GetSize()) == record["original"]["size"]
        assert {p.name[:-7] for p in (folder / "unlabelled").glob("*.nii.gz")} == unlabelled
        test_patients = per_patient["patient_id"].nunique()
        outlines = list((folder / "figures").glob("outlines_*.png"))
        assert len(outlines) == min(3, test_patients), outlines  # best, median, worst, each once
        # the report's "mean (median) ± std" cells are the per-patient CSV's numbers
        for space, rows in per_patient[per_patient["class"] == "foreground"].groupby("space"):
            dice = rows["dice"].dropna()
            std = "–" if len(dice) < 2 else f"{dice.std(ddof=1):.3f}"
            cell = f"{dice.mean():.3f} ({dice.median():.3f}) ± {std}"
            assert cell in html, (space, cell)
    assert "native space" in html and "Kruskal–Wallis" in html


def test_snakemake_report_zip_holds_the_thesis_and_figures(workdir: Path, tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "report.zip"
    result = snakemake(workdir, "--report", str(archive))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert archive.is_file()
    names = zipfile.ZipFile(archive).namelist()
    assert any(name.endswith("thesis.pdf") for name in names), names
    assert any(name.endswith(".png") for name in names), names


def is_nontrivial_png(path: Path) -> bool:
    """A PNG of some size whose pixels are not all one colour."""
    data = path.read_bytes()
    if not data.startswith(b"\x89PNG") or len(data) < 5000:
        return False
    from PIL import Image

    with Image.open(path) as image:
        lo, hi = image.convert("L").getextrema()
        return hi - lo > 50


@pytest.mark.skipif(CHROMIUM is None and not IN_CI, reason="chromium not installed")
def test_chromium_screenshots_the_thesis_html(workdir: Path, tmp_path: Path) -> None:
    assert CHROMIUM, "CI must install chromium"
    png = tmp_path / "thesis.png"
    profile = tmp_path / "profile"
    profile.mkdir()
    html = (workdir / "results/report/thesis.html").resolve()
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        "--window-size=1200,1600",
        html.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert is_nontrivial_png(png)


@pytest.mark.skipif(PDFTOPPM is None and not IN_CI, reason="pdftoppm not installed")
def test_pdftoppm_renders_every_pdf_page(workdir: Path, tmp_path: Path) -> None:
    assert PDFTOPPM, "CI must install poppler-utils"
    pdf = workdir / "results/report/thesis.pdf"
    command = [PDFTOPPM, "-png", "-r", "60", str(pdf), str(tmp_path / "page")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == pdf_pages(pdf.read_bytes()), pages
    assert all(png.stat().st_size > 1000 for png in pages)
    assert is_nontrivial_png(pages[0])


def test_runs_table_carries_what_each_training_cost(workdir: Path) -> None:
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    folder = workdir / Path(layout.benchmark("train/{run}")).parent
    benchmarks = [pd.read_csv(p, sep="\t") for p in sorted(folder.glob("*.tsv"))]
    assert len(benchmarks) == len(runs) == 4
    for column, measured in [("wall_s", "s"), ("cpu_s", "cpu_time")]:
        total = sum(pd.to_numeric(b[measured], errors="coerce").sum() for b in benchmarks)
        assert runs[column].sum() == pytest.approx(total), column
    peak = max(pd.to_numeric(b["max_rss"], errors="coerce").max() for b in benchmarks)
    assert runs["max_rss_mb"].max() == pytest.approx(peak)
    devices = [
        json.loads((workdir / f"results/runs/{run}/provenance.json").read_text())["device"]
        for run in runs["run_id"]
    ]
    on_cuda = [device.startswith("cuda") for device in devices]
    assert runs["device_s"].notna().tolist() == on_cuda
    assert runs["device_peak_mb"].notna().tolist() == on_cuda


def test_thesis_says_what_the_sweep_cost(workdir: Path) -> None:
    text = unescape((workdir / "results/report/thesis.html").read_text())
    runs = pd.read_csv(workdir / "results/summary/runs.csv")
    best = pd.read_csv(workdir / "results/tables/best_runs.csv")["run_id"].iloc[0]
    assert runs["device_s"].isna().all()  # this machine trains on the CPU: wall-clock hours
    took = runs.set_index("run_id").loc[best, "wall_s"]
    sentence = (
        f"The sweep's 4 training runs used {significant(runs['cpu_s'].sum() / 3600)} CPU-hours "
        f"({significant(runs['wall_s'].sum() / 3600)} wall-clock hours) in all; the best "
        f"configuration, {best}, took {significant(took / 3600)} wall-clock hours (Figure "
    )
    assert sentence in re.sub(r"<[^>]+>", "", text)
    assert (workdir / "results/figures/cost.png").is_file() and 'id="fig-cost"' in text
    assert ">Wall (min)<" in text and ">GPU (min)<" not in text


def test_status_and_tensorboard_show_the_finished_sweep(workdir: Path) -> None:
    """`python -m segsweep status` (with the run's config file) says every configuration is
    done, its best the highest val_dice of its log; every run's TensorBoard events hold its log's
    scalars, one point per epoch, and its hyperparameters."""
    command = [sys.executable, "-m", "segsweep", "status", "--workdir", str(workdir)]
    command += ["--config", str(workdir / "config.yaml"), "--csv"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts")}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    status = pd.read_csv(io.StringIO(result.stdout)).set_index("configuration")
    runs = sorted(p.name for p in (workdir / "results/runs").iterdir())
    assert sorted(status.index) == runs
    assert (status["state"] == "done").all()
    assert (status["epoch"] == "2/2").all()
    for run in runs:
        folder = workdir / "results/runs" / run
        log = pd.read_csv(folder / "train_log.csv")
        assert status.loc[run, "best"] == pytest.approx(log["val_dice"].max())
        events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0})
        events.Reload()
        columns = [c for c in log.columns if c != "epoch"]
        assert sorted(events.Tags()["scalars"]) == sorted(tag(c) for c in columns), run
        for column in columns:
            points = events.Scalars(tag(column))
            assert [p.step for p in points] == log["epoch"].tolist(), (run, column)
            values = [p.value for p in points]
            assert values == pytest.approx(log[column].tolist(), rel=1e-6), (run, column)
        content = events.PluginTagToContent(metadata.PLUGIN_NAME)
        start = metadata.parse_session_start_info_plugin_data(
            content[metadata.SESSION_START_INFO_TAG]
        )
        params = yaml.safe_load((folder / "params.yaml").read_text())
        assert start.hparams["run_id"].string_value == run
        assert start.hparams["loss"].string_value == params["loss"]
        assert start.hparams["labels"].string_value == params["labels"]
        assert start.hparams["lr"].number_value == pytest.approx(params["lr"])
        assert metadata.SESSION_END_INFO_TAG in content
